"""Full simulated phone calls with the supervisor as its own service: a Twilio-protocol caller
→ the real voice service → (authenticated HTTP) → the real supervisor service, both on one
real Redis, each with its own simulator (the supervisor service's plays the text model)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer, unused_port

from infra.settings import Settings
from responder.core.controller import FALLBACK_TEXT
from simulator.scenario import load_scenario
from supervisor.service import STATE, create_service_app
from tests.support.calls import assert_protocol_clean, conversation, run_call

TOKEN = "call-test-supervisor-token-0123"


@pytest.fixture
async def supervisor_service(make_settings: Callable[..., Settings]) -> AsyncIterator[TestServer]:
    settings = make_settings(simulator_scenario="returns", supervisor_token=TOKEN)
    server = TestServer(create_service_app(settings, host="127.0.0.1"), host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


async def test_call_answered_by_the_supervisor_service(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings], supervisor_service: TestServer
) -> None:
    url = str(supervisor_service.make_url("")).rstrip("/")
    settings = make_settings(simulator_scenario="returns", supervisor_url=url, supervisor_token=TOKEN)
    scenario = load_scenario("returns")
    svc, report, items = await run_call(start_service, settings, scenario)

    [decision] = await svc.services.history.get_decisions(report.call_sid)
    assert decision.outcome == "ok" and decision.api == "responses"
    assert "returns@3" in decision.policy_labels()
    user_q = scenario.turns[1].say
    user_item = next(i for i in items if i.kind == "message" and i.text == user_q)
    assert decision.user_item_id == user_item.id
    answer = conversation(items)[-1]
    assert answer == ("assistant", decision.text) and "60 days" in decision.text
    assert [i.output for i in items if i.kind == "function_call_output"] == [decision.text]
    assert [i.id for i in items if i.kind == "decision"] == [decision.decision_id]  # recorded once
    # the text model behind the supervisor service answered, not the voice service's own
    assert svc.services.simulator.state.text_requests == []
    service_sim = supervisor_service.app[STATE].simulator.state
    assert any(user_q in str(body) for body in service_sim.text_requests)
    assert_protocol_clean(svc)


async def test_wrong_token_gives_a_recorded_fallback_and_the_call_goes_on(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings], supervisor_service: TestServer
) -> None:
    url = str(supervisor_service.make_url("")).rstrip("/")
    settings = make_settings(
        simulator_scenario="returns", supervisor_url=url, supervisor_token="not-the-right-token-at-all"
    )
    svc, report, items = await run_call(start_service, settings, load_scenario("returns"))
    [decision] = await svc.services.history.get_decisions(report.call_sid)
    assert decision.outcome == "error" and "HTTP 401" in str(decision.error)
    assert "after 1 attempt(s)" in str(decision.error)  # a 401 is not retried
    assert conversation(items)[-1] == ("assistant", FALLBACK_TEXT)
    assert supervisor_service.app[STATE].simulator.state.text_requests == []


async def test_supervisor_service_down_gives_a_recorded_fallback(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(
        simulator_scenario="returns",
        supervisor_url=f"http://127.0.0.1:{unused_port()}",
        supervisor_token=TOKEN,
        supervisor_retry_attempts=3,
        supervisor_retry_base_s=0.05,
    )
    svc, report, items = await run_call(start_service, settings, load_scenario("returns"))
    [decision] = await svc.services.history.get_decisions(report.call_sid)
    assert decision.outcome == "error" and "after 3 attempt(s)" in str(decision.error)
    assert decision.text == FALLBACK_TEXT and conversation(items)[-1] == ("assistant", FALLBACK_TEXT)
    assert svc.services.simulator.state.text_requests == []
    assert_protocol_clean(svc)
