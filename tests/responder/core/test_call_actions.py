"""escalate_to_human and end_call on phone calls: Twilio REST call updates (against a stand-in).

The responder says its line first; once the caller has heard it, the service updates the
call through the ``twilio`` package's async client (``<Dial>`` to transfer, ``completed`` to
hang up), and records the action in the call's history like a decision.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from callrecord.history import HistoryItem
from infra.settings import Settings
from responder.core.actions import GOODBYE_LINE, NO_TRANSFER_LINE, TRANSFER_LINE
from simulator.caller import place_call, speech_ms_for
from simulator.scenario import load_scenario
from simulator.twilio_rest import TwilioRestStandIn
from tests.support.calls import QUIET_MS, assert_protocol_clean, conversation, ended_call_items
from tests.support.service import AUTH_TOKEN, FAST_SPEED, RunningService
from tests.support.waits import wait_until
from tests.support.websocket_calls import PcmClient, ws_call

ACCOUNT = "AC" + "0" * 32
AGENT = "+15555550199"


async def phone_call(
    start_service: Callable[..., Any],
    settings: Settings,
    rest: TwilioRestStandIn,
    scenario_name: str,
    call_sid: str,
) -> tuple[RunningService, Any, list[HistoryItem]]:
    svc: RunningService = await start_service(settings.model_copy(update={"simulator_speed": FAST_SPEED}))
    ended = rest.register_call(call_sid)
    scenario = load_scenario(scenario_name).model_copy(update={"quiet_ms": QUIET_MS})
    report = await place_call(
        svc.url, scenario, auth_token=AUTH_TOKEN, speed=svc.speed, call_sid=call_sid,
        account_sid=ACCOUNT, ended=ended, timeout_s=60,
    )  # fmt: skip
    return svc, report, await ended_call_items(svc, call_sid)


def the_action(items: list[HistoryItem]) -> HistoryItem:
    [action] = [i for i in items if i.kind == "action"]
    return action


async def test_escalation_dials_the_agent_after_the_line_is_heard(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    async with TwilioRestStandIn(ACCOUNT, AUTH_TOKEN) as rest:
        settings = make_settings(
            simulator_scenario="escalate", twilio_account_sid=ACCOUNT,
            twilio_api_base_url=rest.base_url, escalation_phone_number=AGENT,
        )  # fmt: skip
        svc, report, items = await phone_call(start_service, settings, rest, "escalate", "CA" + "e" * 32)
        [update] = rest.updates
    assert update.call_sid == report.call_sid and update.dial_target() == AGENT
    assert report.ended_by_rest == f"dial:{AGENT}"
    action = the_action(items)
    assert action.name == "escalate_to_human"
    assert action.meta["outcome"] == "done" and action.meta["target"] == AGENT
    assert action.meta["reason"]  # the model's reason is kept for the audit trail
    convo = conversation(items)
    assert [text for role, text in convo if role == "assistant"][-1] == TRANSFER_LINE
    # the earlier question was still answered by the supervisor before the handoff
    assert len(await svc.services.history.get_decisions(report.call_sid)) == 1
    # the line played out: the caller echoed marks for audio after the tool call
    assert report.audio_ms_played > 0
    assert_protocol_clean(svc)


async def test_end_call_completes_the_twilio_call(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    async with TwilioRestStandIn(ACCOUNT, AUTH_TOKEN) as rest:
        settings = make_settings(
            simulator_scenario="hangup", twilio_account_sid=ACCOUNT, twilio_api_base_url=rest.base_url
        )
        svc, report, items = await phone_call(start_service, settings, rest, "hangup", "CA" + "f" * 32)
        statuses = [u.status for u in rest.updates]
    assert statuses == ["completed"]
    assert report.ended_by_rest == "completed"
    action = the_action(items)
    assert action.name == "end_call" and action.meta["outcome"] == "done"
    assert ("assistant", GOODBYE_LINE) in conversation(items)
    assert (await svc.services.history.get_meta(report.call_sid))["status"] == "ended"
    assert_protocol_clean(svc)


async def test_without_a_transfer_number_the_request_is_recorded_and_the_call_ends(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    async with TwilioRestStandIn(ACCOUNT, AUTH_TOKEN) as rest:
        settings = make_settings(
            simulator_scenario="escalate", twilio_account_sid=ACCOUNT, twilio_api_base_url=rest.base_url
        )
        _, _, items = await phone_call(start_service, settings, rest, "escalate", "CA" + "a" * 32)
        statuses = [u.status for u in rest.updates]
    action = the_action(items)
    assert action.meta["outcome"] == "no_transfer_target" and action.meta["target"] is None
    assert ("assistant", NO_TRANSFER_LINE) in conversation(items)
    assert statuses == ["completed"]


async def test_a_failing_twilio_api_still_ends_the_call_and_records_the_failure(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    async with TwilioRestStandIn(ACCOUNT, "a-different-token") as rest:  # every update: 401
        settings = make_settings(
            simulator_scenario="hangup", twilio_account_sid=ACCOUNT, twilio_api_base_url=rest.base_url
        )
        svc, report, items = await phone_call(start_service, settings, rest, "hangup", "CA" + "b" * 32)
        assert rest.updates == []
    action = the_action(items)
    assert action.meta["outcome"] == "failed" and "401" in (action.meta["error"] or "")
    assert report.hung_up_by_service  # our side closed the media stream: Twilio ends the call
    assert (await svc.services.history.get_meta(report.call_sid))["status"] == "ended"


def ws_action_script(scenario_name: str) -> Callable[[PcmClient], Any]:
    """The scenario's turns, then wait for the service to end the call (no ``stop`` sent)."""
    scenario = load_scenario(scenario_name)

    async def script(client: PcmClient) -> None:
        await wait_until(lambda: client.playback.received_ms > 0, 10, what="the greeting")
        for turn in scenario.turns:
            await client.wait_quiet()
            await client.speak(speech_ms_for(turn))
        await wait_until(client.closed.is_set, 30, what="the service ending the call")

    return script


@pytest.mark.parametrize(
    ("scenario", "tool", "line", "outcome"),
    [
        ("hangup", "end_call", GOODBYE_LINE, "done"),
        ("escalate", "escalate_to_human", NO_TRANSFER_LINE, "no_transfer_target"),
    ],
)
async def test_websocket_calls_end_after_the_line_and_record_the_action(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings],
    scenario: str, tool: str, line: str, outcome: str,
) -> None:  # fmt: skip
    svc = await start_service(make_settings(simulator_scenario=scenario, simulator_speed=FAST_SPEED))
    report = await ws_call(svc, ws_action_script(scenario))
    # the service closed the socket itself, with its end notice last
    assert report.ended == {"type": "ended", "reason": "call_ended"} and report.after_ended == 0
    items = await ended_call_items(svc, report.call_id)
    action = the_action(items)
    assert action.name == tool and action.meta["outcome"] == outcome
    assert action.meta["transport"] == "websocket" and action.meta["reason"]
    assert [t for r, t in conversation(items) if r == "assistant"][-1] == line
    # the line was played to the caller (marks echoed) before the socket closed
    assert report.marks_echoed > 0 and report.audio_ms > 0
    assert len(await svc.services.history.get_decisions(report.call_id)) == 1
    # the slot is freed as the controller closes, just after the call's end is recorded
    await wait_until(lambda: svc.services.admission.active_total == 0, 5, 0.02, what="the slot freed")
    assert_protocol_clean(svc)
