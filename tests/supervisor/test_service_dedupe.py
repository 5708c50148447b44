"""Supervisor service hardening: one decision per request id (retries after a lost answer),
auth on every non-probe path, and hostile bodies. Real Redis, the real SDK, real HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, unused_port
from redis.asyncio import Redis

from callrecord.decisions import Decision
from infra.redis_server import client_options
from infra.settings import Settings
from responder.runtime.supervisor_client import RemoteSupervisor
from supervisor.idempotency import DecideOnce
from supervisor.retry import Backoff
from supervisor.service import STATE, create_service_app
from tests.support.supervisor import SUPERVISOR_TOKEN, TENT_QUESTION, post_decide


def _body(call_id: str, request_id: str | None) -> str:
    return json.dumps({"call_id": call_id, "context": TENT_QUESTION, "request_id": request_id})


async def test_a_repeated_request_id_is_answered_not_decided_again(service: TestServer) -> None:
    state = service.app[STATE]
    status, first = await post_decide(service, _body("CAdd1", "req_a"))
    assert status == 200 and first["outcome"] == "ok"
    asked = len(state.simulator.state.text_requests)
    status, again = await post_decide(service, _body("CAdd1", "req_a"))
    assert status == 200 and again == first  # the same decision, byte for byte
    assert len(state.simulator.state.text_requests) == asked  # the model was not asked again
    assert [d.decision_id for d in await state.history.get_decisions("CAdd1")] == [first["decision_id"]]
    # another request id is another decision
    status, other = await post_decide(service, _body("CAdd1", "req_b"))
    assert status == 200 and other["decision_id"] != first["decision_id"]
    assert len(await state.history.get_decisions("CAdd1")) == 2


async def test_concurrent_tries_with_one_request_id_record_one_decision(service: TestServer) -> None:
    results = await asyncio.gather(*(post_decide(service, _body("CAdd2", "req_c")) for _ in range(3)))
    assert [s for s, _ in results] == [200, 200, 200]
    assert len({d["decision_id"] for _, d in results}) == 1
    assert len(await service.app[STATE].history.get_decisions("CAdd2")) == 1


async def test_request_id_is_validated(service: TestServer) -> None:
    status, error = await post_decide(service, _body("CAdd3", "bad id/../x"))
    assert status == 400 and "request_id" in error["error"]["message"]


async def test_dedupe_states_in_redis(redis: Redis, key_prefix: str) -> None:
    once = DecideOnce(redis, key_prefix, poll_s=0.01)
    key = once.key("CAdd4", "req_d")
    assert await once.claim(key, 2.0) == "run"
    assert await once.claim(key, 2.0) == "wait"
    assert await once.result(key, 0.05) is None  # still pending
    assert 0 < await redis.ttl(key) <= 2 + 5  # a crashed run frees the id soon
    await once.release(key)  # the run was cancelled: the next try runs it
    assert await once.result(key, 0.05) == "run"
    decision = Decision(call_id="CAdd4", context="q", text="answer")
    await once.finish(key, decision)
    found = await once.result(key, 0.05)
    assert isinstance(found, Decision) and found.decision_id == decision.decision_id


async def test_client_retry_after_a_lost_answer_gets_the_same_decision(service: TestServer) -> None:
    """A proxy in front of the service answers 502 to the first try after the service decided:
    the client's retry (same request_id) gets that decision; the call records one decision."""
    target = str(service.make_url("/v1/decide"))
    forwarded: list[dict[str, object]] = []

    async def proxy(request: web.Request) -> web.Response:
        body = await request.read()
        forwarded.append(json.loads(body))
        headers = {"Authorization": request.headers.get("Authorization", "")}
        async with aiohttp.ClientSession() as session:
            async with session.post(target, data=body, headers=headers) as upstream:
                text = await upstream.text()
                status = upstream.status
        if len(forwarded) == 1:
            return web.Response(status=502, text="bad gateway")  # the answer is lost on the way
        return web.Response(status=status, text=text, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/decide", proxy)
    proxy_server = TestServer(app, host="127.0.0.1")
    await proxy_server.start_server()
    state = service.app[STATE]
    remote = RemoteSupervisor(
        str(proxy_server.make_url("")).rstrip("/"), state.history, token=SUPERVISOR_TOKEN, deadline_s=5.0,
        backoff=Backoff(attempts=3, base_s=0.05, max_s=0.1),
    )  # fmt: skip
    try:
        decision = await remote.decide("CAdd5", TENT_QUESTION, user_item_id="item_5")
    finally:
        await remote.aclose()
        await proxy_server.close()
    assert len(forwarded) == 2 and forwarded[0]["request_id"] == forwarded[1]["request_id"]
    assert decision.outcome == "ok" and "60 days" in decision.text
    assert [d.decision_id for d in await state.history.get_decisions("CAdd5")] == [decision.decision_id]


async def test_every_non_probe_path_needs_the_token(service: TestServer) -> None:
    async with aiohttp.ClientSession() as session:
        for path in ("/v1/decide", "/anything", "/v2/decide", "/V1/decide"):
            async with session.post(service.make_url(path), data=_body("CAdd6", None)) as response:
                assert response.status == 401, path
        auth = {"Authorization": f"Bearer {SUPERVISOR_TOKEN}"}
        async with session.get(service.make_url("/anything"), headers=auth) as response:
            assert response.status == 404
        for path in ("/healthz", "/readyz", "/metrics"):
            async with session.get(service.make_url(path)) as response:
                assert response.status == 200, path


async def test_deeply_nested_json_is_a_400_not_a_500(service_settings: Callable[..., Settings]) -> None:
    settings = service_settings(max_body_bytes=64 * 1024)
    server = TestServer(create_service_app(settings, host="127.0.0.1"), host="127.0.0.1")
    await server.start_server()
    try:
        status, error = await post_decide(server, "[" * 50_000)  # RecursionError in json.loads
    finally:
        await server.close()
    assert status == 400 and error["error"]["code"] in ("invalid_json", "invalid_request")


def test_placeholder_or_blank_tokens_are_refused(service_settings: Callable[..., Settings]) -> None:
    # deploy/k8s/secret.example.yaml's value, and a blank one that passes the length check
    for token in ("EXAMPLE-REPLACE-ME", " " * 20, "a-good-token-but with-a-space"):
        with pytest.raises(ValueError, match="placeholder"):
            create_service_app(service_settings(supervisor_token=token), host="0.0.0.0")


async def test_redis_down_never_blocks_a_decision() -> None:
    """No Redis listening: the dedupe steps say "run" (decide anyway) and never raise."""
    down = Redis(host="127.0.0.1", port=unused_port(), **client_options(tcp=True))  # as in production
    once = DecideOnce(down, "test-down")
    key = once.key("CAdd7", "req_e")
    try:
        assert await once.claim(key, 1.0) == "run"
        assert await once.result(key, 0.1) == "run"
        await once.finish(key, Decision(call_id="CAdd7", context="q", text="a"))
        await once.release(key)
    finally:
        await down.aclose()
