"""Transfer and hang-up on the GPT-Live engine: Live has no tools, so the supervisor asks for
them on a delegated turn (supervisor/call_control.py); the action's line is spoken as that
delegation's answer (commentary), and once it has been said the call is transferred or hung
up — Twilio through its REST API, SIP through ``client.live.sessions.refer`` / ``hangup``,
WebRTC through ``hangup``, the browser WebSocket by closing it.

Every client event the service sends is validated by the simulator's Live double against
``openai.types.live``; none may be invalid and none refused.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import aiohttp

from callrecord.history import HistoryItem
from infra.settings import Settings
from responder.core.actions import GOODBYE_LINE, TRANSFER_LINE
from simulator.caller import place_call
from simulator.live_sip import send_live_incoming_call
from simulator.scenario import load_scenario
from simulator.twilio_rest import TwilioRestStandIn
from tests.support.calls import QUIET_MS, conversation, ended_call_items
from tests.support.service import AUTH_TOKEN, FAST_SPEED, RunningService
from tests.support.sideband import SIP_SECRET
from tests.support.simulator import OFFER
from tests.support.websocket_calls import PcmClient, scenario_script, ws_call

ACCOUNT = "AC" + "0" * 32
AGENT = "+15555550199"


def assert_live_clean(svc: RunningService) -> None:
    state = svc.services.simulator.state
    assert state.live_invalid_events == [], state.live_invalid_events
    assert state.live_refused_events == [], state.live_refused_events
    assert state.client_events == []  # nothing went to the Realtime API


def the_action(items: list[HistoryItem]) -> HistoryItem:
    [action] = [i for i in items if i.kind == "action"]
    return action


async def assert_line_answered_the_delegation(svc: RunningService, call_id: str, line: str) -> None:
    """The second turn's decision asked for the action; its line went out as the commentary of
    that turn's delegation, and was spoken before the call was transferred or hung up."""
    first, second = await svc.services.history.get_decisions(call_id)
    assert first.action is None and first.outcome == "ok"
    assert second.trigger == "delegation" and second.action is not None and second.action_reason
    commentary = [e for e in svc.services.simulator.state.live_client_events
                  if e["type"] == "session.commentary.append" and e["delegation_id"] is not None]  # fmt: skip
    assert [e["content"] for e in commentary][-1] == line


async def phone_call(
    start_service: Callable[..., Any], settings: Settings, rest: TwilioRestStandIn, name: str, call_sid: str
) -> tuple[RunningService, Any, list[HistoryItem]]:
    svc: RunningService = await start_service(settings.model_copy(update={"simulator_speed": FAST_SPEED}))
    ended = rest.register_call(call_sid)
    scenario = load_scenario(name).model_copy(update={"quiet_ms": QUIET_MS})
    report = await place_call(
        svc.url, scenario, auth_token=AUTH_TOKEN, speed=svc.speed, call_sid=call_sid,
        account_sid=ACCOUNT, ended=ended, timeout_s=60,
    )  # fmt: skip
    return svc, report, await ended_call_items(svc, call_sid)


async def test_a_live_phone_call_is_transferred_after_the_line(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    async with TwilioRestStandIn(ACCOUNT, AUTH_TOKEN) as rest:
        settings = make_settings(
            engine="live", simulator_scenario="escalate", twilio_account_sid=ACCOUNT,
            twilio_api_base_url=rest.base_url, escalation_phone_number=AGENT,
        )  # fmt: skip
        svc, report, items = await phone_call(start_service, settings, rest, "escalate", "CA" + "1" * 32)
        [update] = rest.updates
    assert update.dial_target() == AGENT and report.ended_by_rest == f"dial:{AGENT}"
    action = the_action(items)
    assert action.name == "escalate_to_human" and action.meta["outcome"] == "done"
    assert action.meta["target"] == AGENT and action.meta["reason"]
    said = [text for role, text in conversation(items) if role == "assistant"]
    assert said[-1].endswith(TRANSFER_LINE)  # heard before the transfer
    assert report.audio_ms_played > 0
    await assert_line_answered_the_delegation(svc, report.call_sid, TRANSFER_LINE)
    assert_live_clean(svc)


async def test_a_live_phone_call_is_hung_up_after_the_goodbye(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    async with TwilioRestStandIn(ACCOUNT, AUTH_TOKEN) as rest:
        settings = make_settings(
            engine="live", simulator_scenario="hangup", twilio_account_sid=ACCOUNT,
            twilio_api_base_url=rest.base_url,
        )  # fmt: skip
        svc, report, items = await phone_call(start_service, settings, rest, "hangup", "CA" + "2" * 32)
        statuses = [u.status for u in rest.updates]
    assert statuses == ["completed"] and report.ended_by_rest == "completed"
    action = the_action(items)
    assert action.name == "end_call" and action.meta["outcome"] == "done"
    said = [text for role, text in conversation(items) if role == "assistant"]
    assert said[-1].endswith(GOODBYE_LINE)
    await assert_line_answered_the_delegation(svc, report.call_sid, GOODBYE_LINE)
    assert_live_clean(svc)


async def test_a_live_sip_call_is_referred_after_the_line(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc = await start_service(make_settings(
        openai_webhook_secret=SIP_SECRET, simulator_speed=FAST_SPEED, simulator_scenario="escalate",
        escalation_sip_uri="tel:+15555550199",
    ))  # fmt: skip
    state = svc.services.simulator.state
    delivery = await send_live_incoming_call(svc.url + "/openai/sip", SIP_SECRET, state=state)
    items = await ended_call_items(svc, delivery.call_id)
    action = the_action(items)
    assert action.name == "escalate_to_human" and action.meta["outcome"] == "done"
    assert action.meta["transport"] == "sip" and action.meta["target"] == "tel:+15555550199"
    assert ("refer", {"target_uri": "tel:+15555550199"}) in state.actions_for(delivery.call_id)
    await assert_line_answered_the_delegation(svc, delivery.call_id, TRANSFER_LINE)
    assert_live_clean(svc)


async def test_a_live_sip_call_is_hung_up_after_the_goodbye(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc = await start_service(make_settings(
        openai_webhook_secret=SIP_SECRET, simulator_speed=FAST_SPEED, simulator_scenario="hangup",
    ))  # fmt: skip
    state = svc.services.simulator.state
    delivery = await send_live_incoming_call(svc.url + "/openai/sip", SIP_SECRET, state=state)
    items = await ended_call_items(svc, delivery.call_id)
    action = the_action(items)
    assert action.name == "end_call" and action.meta["outcome"] == "done"
    assert [a for a, _ in state.actions_for(delivery.call_id)][-1] == "hangup"
    await assert_line_answered_the_delegation(svc, delivery.call_id, GOODBYE_LINE)
    assert_live_clean(svc)


async def test_a_live_webrtc_call_is_hung_up_after_the_goodbye(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc = await start_service(make_settings(simulator_scenario="hangup", simulator_speed=FAST_SPEED))
    state = svc.services.simulator.state
    async with (
        aiohttp.ClientSession() as http,
        http.post(svc.url + "/calls/webrtc?engine=live", data=OFFER,
                  headers={"Content-Type": "application/sdp"}) as resp,  # fmt: skip
    ):
        assert resp.status == 200, await resp.text()
        call_id = resp.headers["X-Call-Id"]
    items = await ended_call_items(svc, call_id)
    action = the_action(items)
    assert action.name == "end_call" and action.meta["outcome"] == "done"
    assert action.meta["transport"] == "webrtc"
    assert [a for a, _ in state.actions_for(call_id)][-1] == "hangup"
    await assert_line_answered_the_delegation(svc, call_id, GOODBYE_LINE)
    assert_live_clean(svc)


async def test_a_live_browser_websocket_call_is_closed_after_the_goodbye(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    scenario = load_scenario("hangup")
    svc = await start_service(make_settings(simulator_scenario="hangup", simulator_speed=FAST_SPEED))
    speak = scenario_script(scenario)

    async def script(client: PcmClient) -> None:
        with contextlib.suppress(aiohttp.ClientConnectionResetError):  # the service hung up on it
            await speak(client)

    report = await ws_call(svc, script, engine="live")
    items = await ended_call_items(svc, report.call_id)
    action = the_action(items)
    assert action.name == "end_call" and action.meta["outcome"] == "done"
    assert action.meta["transport"] == "websocket"
    said = [text for role, text in conversation(items) if role == "assistant"]
    assert said[-1].endswith(GOODBYE_LINE)
    await assert_line_answered_the_delegation(svc, report.call_id, GOODBYE_LINE)
    assert_live_clean(svc)
