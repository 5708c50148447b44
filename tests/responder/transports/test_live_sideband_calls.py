"""GPT-Live calls OpenAI carries: SIP (the signed ``live.transport.incoming`` webhook → accept →
sideband) and browser WebRTC (``client.live.create`` with the offer → answer SDP → sideband),
served like every other call: the caller's turn rebuilt from the timeline, the delegation
answered with the supervisor's commentary, the call hung up through ``client.live.sessions``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp

from infra.settings import Settings
from simulator.live_sip import send_live_incoming_call
from simulator.scenario import load_scenario
from tests.support.calls import conversation, ended_call_items
from tests.support.service import FAST_SPEED, RunningService
from tests.support.sideband import SIP_SECRET
from tests.support.simulator import OFFER


def assert_live_clean(svc: RunningService) -> None:
    state = svc.services.simulator.state
    assert state.live_invalid_events == [] and state.live_refused_events == []
    assert state.client_events == []  # nothing went to the Realtime API


async def test_a_live_sip_call_is_accepted_served_and_grounded(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc = await start_service(make_settings(
        openai_webhook_secret=SIP_SECRET, simulator_speed=FAST_SPEED, simulator_scenario="returns",
    ))  # fmt: skip
    state = svc.services.simulator.state
    delivery = await send_live_incoming_call(svc.url + "/openai/sip", SIP_SECRET, state=state, duplicate=2)
    assert delivery.call_id.startswith("live_") and delivery.statuses == [200, 200]
    items = await ended_call_items(svc, delivery.call_id)
    meta = await svc.services.history.get_meta(delivery.call_id)
    assert meta["engine"] == "live" and meta["transport"] == "sip"
    scenario = load_scenario("returns")
    assert ("user", scenario.turns[1].say) in conversation(items)
    [decision] = await svc.services.history.get_decisions(delivery.call_id)
    assert decision.trigger == "delegation" and "returns@3" in decision.policy_labels()
    actions = [a for a, _ in state.actions_for(delivery.call_id)]
    assert actions.count("accept") == 1  # the duplicate delivery started nothing
    [(_, body)] = [a for a in state.actions_for(delivery.call_id) if a[0] == "accept"]
    assert body["session"]["type"] == "live" and body["session"]["delegation"]["type"] == "client"
    assert "format" not in body["session"].get("audio", {})  # SIP negotiates its codec
    assert_live_clean(svc)


async def test_a_live_webrtc_call_gets_its_answer_and_a_sideband(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc = await start_service(make_settings(simulator_speed=FAST_SPEED, simulator_scenario="returns"))
    async with (
        aiohttp.ClientSession() as http,
        http.post(svc.url + "/calls/webrtc?engine=live", data=OFFER,
                  headers={"Content-Type": "application/sdp"}) as resp,  # fmt: skip
    ):
        answer, headers = await resp.text(), dict(resp.headers)
        assert resp.status == 200, answer
    call_id = headers["X-Call-Id"]
    assert call_id.startswith("live_") and answer.startswith("v=0")
    items = await ended_call_items(svc, call_id)
    assert (await svc.services.history.get_meta(call_id))["engine"] == "live"
    [decision] = await svc.services.history.get_decisions(call_id)
    assert decision.trigger == "delegation" and "returns@3" in decision.policy_labels()
    assert any(i.kind == "function_call_output" for i in items)
    assert_live_clean(svc)
