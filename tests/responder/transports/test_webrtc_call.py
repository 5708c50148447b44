"""Browser WebRTC with server-side control: SDP proxy → simulator ``/v1/realtime/calls`` → sideband.

The browser's offer goes to the service, which creates the call with the key it holds
(multipart ``sdp`` + ``session`` through the openai SDK), returns the answer and runs the
call controller on the sideband socket. The simulator plays the caller on that socket.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from callrecord.history import CallHistory
from infra.settings import Settings
from simulator.scenario import load_scenario
from tests.support.calls import conversation, ended_call_items, wait_for_status
from tests.support.service import FAST_SPEED, RunningService
from tests.support.simulator import OFFER
from tests.support.waits import wait_until


async def post_offer(svc: RunningService, offer: str = OFFER) -> tuple[int, str, dict[str, str]]:
    headers = {"Content-Type": "application/sdp"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(svc.url + "/calls/webrtc", data=offer, headers=headers) as resp,
    ):
        return resp.status, await resp.text(), dict(resp.headers)


async def test_offer_is_proxied_and_the_sideband_serves_the_call(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc = await start_service(make_settings(simulator_scenario="returns", simulator_speed=FAST_SPEED))
    state = svc.services.simulator.state
    status, answer, headers = await post_offer(svc)
    assert status == 200, answer
    call_id = headers["X-Call-Id"]
    assert call_id.startswith("rtc_") and answer.startswith("v=0")
    assert headers["X-Call-Token"] == svc.services.view_token(call_id)
    assert headers["Content-Type"].startswith("application/sdp")
    assert "sk-" not in answer and "Authorization" not in headers

    [(action, body)] = state.actions_for(call_id)[:1]
    assert action == "create"
    assert body["session"]["type"] == "realtime" and body["sdp"] == OFFER  # the multipart parts

    items = await ended_call_items(svc, call_id)
    convo = conversation(items)
    scenario = load_scenario("returns")
    assert convo[0] == ("assistant", scenario.greeting)
    assert convo[-1][0] == "assistant" and "60 days" in convo[-1][1]
    [decision] = await svc.services.history.get_decisions(call_id)
    assert decision.outcome == "ok" and "returns@3" in decision.policy_labels()
    assert (await svc.services.history.get_meta(call_id))["transport"] == "webrtc"
    assert state.invalid_events == [] and state.errors_sent == []
    # the slot is freed as the controller closes, just after the call's end is recorded
    await wait_until(lambda: svc.services.admission.active_total == 0, 5, 0.02, what="the slot freed")


async def test_bad_and_oversize_offers_are_refused_before_any_call_is_created(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc = await start_service(make_settings())
    status, _, _ = await post_offer(svc, "hello")
    assert status == 400
    async with aiohttp.ClientSession() as http, http.post(svc.url + "/calls/webrtc", data=OFFER) as resp:
        assert resp.status == 415  # a form post from another site's page never creates a call
    status, _, _ = await post_offer(svc, "v=0\r\n" + "a=x\r\n" * 20_000)
    assert status == 413
    assert svc.services.simulator.state.call_actions == []


async def test_rate_limit_per_client_answers_429_with_retry_after(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc = await start_service(make_settings(call_rate_burst=1, call_rate_per_minute=1))
    first, _, _ = await post_offer(svc)
    second, body, headers = await post_offer(svc)
    assert first == 200
    assert second == 429 and "rate_limited" in body
    assert int(headers["Retry-After"]) > 0
    creates = [a for _, a, _ in svc.services.simulator.state.call_actions if a == "create"]
    assert len(creates) == 1


async def test_concurrent_call_cap_answers_429_while_full(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(max_concurrent_calls=1, simulator_scenario="returns", simulator_speed=FAST_SPEED)
    svc = await start_service(settings)
    first, _, headers = await post_offer(svc)
    second, body, _ = await post_offer(svc)
    assert first == 200
    assert second == 429 and "capacity" in body
    await ended_call_items(svc, headers["X-Call-Id"])
    await wait_until(lambda: not svc.services.admission.active_total, 5, 0.02)
    third, _, _ = await post_offer(svc)  # the first call ended: its slot is free again
    assert third == 200


async def test_end_call_hangs_up_the_webrtc_call(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc = await start_service(make_settings(simulator_scenario="hangup", simulator_speed=FAST_SPEED))
    state = svc.services.simulator.state
    status, _, headers = await post_offer(svc)
    assert status == 200
    call_id = headers["X-Call-Id"]
    items = await ended_call_items(svc, call_id)
    [action] = [i for i in items if i.kind == "action"]
    assert action.name == "end_call" and action.meta["outcome"] == "done"
    assert action.meta["transport"] == "webrtc"
    assert [a for a, _ in state.actions_for(call_id)][-1] == "hangup"
    assert any("Goodbye" in t for r, t in conversation(items) if r == "assistant")


async def test_a_failed_sideband_frees_the_slot_and_hangs_up_the_call(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    """The call is created upstream but its sideband cannot connect: nobody could answer the
    model's tool calls, so the call is hung up, marked failed, and its slot freed."""
    from aiohttp.test_utils import unused_port

    from simulator.entry import start_simulator

    sim = await start_simulator("returns", 8.0)
    sim_url = sim.url
    try:
        settings = make_settings(
            openai_api_key="sk-test-simulator", openai_base_url=sim_url + "/v1",
            realtime_url=f"ws://127.0.0.1:{unused_port()}/v1",  # nothing listens there
        )  # fmt: skip
        svc = await start_service(settings)
        status, answer, headers = await post_offer(svc)
        assert status == 200, answer
        call_id = headers["X-Call-Id"]
        meta = await wait_for_status(svc, call_id, {"failed", "ended"})
        assert meta["status"] == "failed"
        state = sim.state
        await wait_until(
            lambda: not (svc.services.admission.active_total or svc.services.call_tasks), 5, 0.02
        )
        assert [a for a, _ in state.actions_for(call_id)] == ["create", "hangup"]
        assert state.calls[call_id].status == "hung_up"
    finally:
        await sim.close()


@pytest.mark.parametrize("stage", ["starting", "greeting"])
async def test_shutdown_ends_live_sideband_calls_and_frees_their_slots(
    start_service: Callable[..., Any],
    make_settings: Callable[..., Settings],
    history: CallHistory,
    stage: str,
) -> None:
    svc = await start_service(make_settings(simulator_scenario="returns", simulator_speed=1.0))
    status, _, headers = await post_offer(svc)
    assert status == 200
    call_id = headers["X-Call-Id"]
    await wait_for_status(svc, call_id, {"active"})
    if stage == "greeting":  # "starting": shut down while the call is being set up
        await wait_until(lambda: history.get_items(call_id), 10, 0.02, what="the greeting recorded")
    services = svc.services
    simulator = services.simulator.state
    assert services.admission.active_total == 1 and len(services.call_tasks) == 1
    [task] = services.call_tasks
    async with asyncio.timeout(15):
        await svc.server.close()
    assert task.done() and not services.call_tasks
    assert services.admission.active_total == 0
    assert (await history.get_meta(call_id))["status"] == "ended"
    # the call is hung up, not left running upstream with nobody answering its tool calls
    assert [a for a, _ in simulator.actions_for(call_id)] == ["create", "hangup"]
