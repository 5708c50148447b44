"""The supervisor service over real HTTP: real Redis, the real openai SDK against the simulator."""

from __future__ import annotations

import json
from collections.abc import Callable

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from pydantic import SecretStr
from structlog.testing import capture_logs

from callrecord.history import CallHistory
from infra.redact import KnownSecrets, secret_values
from infra.settings import Settings
from supervisor.service import STATE, check_token, create_service_app
from tests.support.supervisor import SUPERVISOR_TOKEN, TENT_QUESTION, post_decide


async def test_decision_is_grounded_and_recorded(service: TestServer) -> None:
    body = json.dumps({"call_id": "CAsvc1", "context": TENT_QUESTION, "user_item_id": "item_u1"})
    with capture_logs() as logs:
        status, decision = await post_decide(service, body)
    assert status == 200, decision
    assert decision["outcome"] == "ok" and decision["call_id"] == "CAsvc1"
    assert decision["user_item_id"] == "item_u1"
    assert ("returns", 3) in [(p["id"], p["version"]) for p in decision["policies"]]
    assert "60 days" in decision["text"] and "[policy:" not in decision["text"]
    assert [t["name"] for t in decision["tool_calls"]] == ["lookupPolicyDocument"]
    # recorded on the call in Redis, as the in-process supervisor does
    history: CallHistory = service.app[STATE].history
    [stored] = await history.get_decisions("CAsvc1")
    assert stored.decision_id == decision["decision_id"] and stored.policy_labels() == ["returns@3"]
    items = await history.get_items("CAsvc1")
    assert [i.id for i in items if i.kind == "decision"] == [decision["decision_id"]]
    events = [e for e in logs if e["event"] == "supervisor_service.request"]
    assert len(events) == 1 and events[0]["call_id"] == "CAsvc1" and events[0]["outcome"] == "ok"
    # the text model behind the service was asked with the caller's question
    sim = service.app[STATE].simulator.state
    assert any(TENT_QUESTION in json.dumps(r) for r in sim.text_requests)


async def test_auth_missing_or_wrong_is_401_and_runs_nothing(service: TestServer) -> None:
    body = json.dumps({"call_id": "CAsvc2", "context": TENT_QUESTION})
    for token in (None, "wrong-token-0123456789abcdef", SUPERVISOR_TOKEN + "x", ""):
        status, error = await post_decide(service, body, token=token)
        assert status == 401, token
        assert error["error"]["code"] == "unauthorized"
    async with aiohttp.ClientSession() as session:  # not a bearer scheme at all
        async with session.post(
            service.make_url("/v1/decide"), data=body, headers={"Authorization": f"Basic {SUPERVISOR_TOKEN}"}
        ) as response:
            assert response.status == 401
    assert service.app[STATE].simulator.state.text_requests == []
    assert await service.app[STATE].history.get_decisions("CAsvc2") == []


async def test_bad_json_invalid_fields_and_oversize(service: TestServer) -> None:
    status, error = await post_decide(service, b"{not json")
    assert (status, error["error"]["code"]) == (400, "invalid_json")
    status, error = await post_decide(service, b"\xff\xfe")
    assert (status, error["error"]["code"]) == (400, "invalid_json")
    status, error = await post_decide(service, json.dumps(["a", "list"]))
    assert status == 400 and error["error"]["code"] == "invalid_request"
    status, error = await post_decide(service, json.dumps({"context": TENT_QUESTION}))
    assert status == 400 and "call_id" in error["error"]["message"]
    status, error = await post_decide(service, json.dumps({"call_id": "CA x/../", "context": TENT_QUESTION}))
    assert status == 400 and "call_id" in error["error"]["message"]
    odd_item = {"call_id": "CAsvc3", "context": TENT_QUESTION, "user_item_id": '"}{\n\u0000'}
    status, error = await post_decide(service, json.dumps(odd_item))  # an item id is an id
    assert status == 400 and "user_item_id" in error["error"]["message"]
    status, error = await post_decide(service, json.dumps({"call_id": "CAsvc3", "context": 42, "extra": 1}))
    assert status == 400
    assert "context" in error["error"]["message"] and "extra" in error["error"]["message"]
    status, error = await post_decide(service, json.dumps({"call_id": "CAsvc3", "context": "x" * 5000}))
    assert (status, error["error"]["code"]) == (413, "too_large")
    assert service.app[STATE].simulator.state.text_requests == []


async def test_caller_deadline_shortens_the_run(service: TestServer) -> None:
    # the returns scenario's question turn has no delay; ask with a deadline too short for
    # even one model round trip to be certain of finishing → a recorded timeout decision
    sim = service.app[STATE].simulator.state
    sim.text_failures, sim.text_failure_retry_after = [503] * 50, 0.05
    body = json.dumps({"call_id": "CAsvc4", "context": TENT_QUESTION, "deadline_s": 0.4})
    status, decision = await post_decide(service, body)
    assert status == 200
    assert decision["outcome"] in ("timeout", "error") and decision["latency_ms"] < 600
    # the configured 5 s deadline would allow all 4 tries (~0.7-1.4 s of backoff)
    assert 1 <= len(sim.text_failures_sent) <= 2
    [stored] = await service.app[STATE].history.get_decisions("CAsvc4")
    assert stored.outcome == decision["outcome"]


async def test_probes(service: TestServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(service.make_url("/healthz")) as response:
            assert response.status == 200
        async with session.get(service.make_url("/readyz")) as response:
            ready = await response.json()
            assert response.status == 200 and ready["ready"] is True and ready["policies"] >= 8
        async with session.get(service.make_url("/metrics")) as response:
            assert response.status == 200 and "supervisor_service_requests" in await response.text()


def test_refuses_to_serve_open_off_loopback(service_settings: Callable[..., Settings]) -> None:
    open_settings = service_settings(supervisor_token=None)
    for host in ("127.0.0.1", "::1", "localhost"):
        assert check_token(open_settings, host) is None
    for host in ("0.0.0.0", "::", "10.0.0.5"):
        with pytest.raises(ValueError, match="RESPONDER_SUPERVISOR_TOKEN"):
            create_service_app(open_settings, host=host)
    with pytest.raises(ValueError, match="too short"):
        check_token(service_settings(supervisor_token="short"), "0.0.0.0")
    assert check_token(service_settings(), "0.0.0.0") == SUPERVISOR_TOKEN


def test_token_is_masked_in_logs(service_settings: Callable[..., Settings]) -> None:
    settings = service_settings(supervisor_token=SecretStr("9f3c-supervisor-shared-token"))
    mask = KnownSecrets(secret_values(settings))  # what configure_logging installs from settings
    event = mask(None, "info", {"event": "t.event", "note": "sent 9f3c-supervisor-shared-token upstream"})
    assert event["note"] == "sent [secret] upstream"
