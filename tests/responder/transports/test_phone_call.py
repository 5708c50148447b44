"""Full simulated phone calls: a Twilio-protocol caller → the real service → the simulator.

Everything real except the two ends: a real aiohttp server, real Redis, the real openai SDK
(realtime WS and Responses API) talking to the simulator, which validates every client event
against the SDK's types.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from infra.settings import Settings
from responder.core.controller import FALLBACK_TEXT, HOLD_LINE_TEXT
from simulator.caller import place_call
from simulator.scenario import load_scenario
from tests.support.calls import assert_protocol_clean, conversation, run_call
from tests.support.service import AUTH_TOKEN, FAST_SPEED, TIMING_SPEED, RunningService
from tests.support.waits import wait_until


async def test_greeting_chitchat_and_grounded_answer(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    scenario = load_scenario("returns")
    svc, report, items = await run_call(start_service, make_settings(simulator_scenario="returns"), scenario)
    convo = conversation(items)
    # greeting first, then the caller's turns in conversation order
    assert convo[0] == ("assistant", scenario.greeting)
    assert ("user", scenario.turns[0].say) in convo
    assert ("assistant", scenario.turns[0].reply) in convo
    user_q = scenario.turns[1].say
    q_index = convo.index(("user", user_q))
    assert convo[q_index + 1] == ("assistant", scenario.turns[1].filler)
    answer = convo[-1][1]
    assert "60 days" in answer
    # chitchat never reached the supervisor: exactly one decision, for the factual turn
    [decision] = await svc.services.history.get_decisions(report.call_sid)
    assert decision.outcome == "ok"
    assert "returns@3" in decision.policy_labels()
    assert decision.text == answer and "[policy:" not in answer and "**" not in answer
    user_item = next(i for i in items if i.kind == "message" and i.text == user_q)
    assert decision.user_item_id == user_item.id
    kinds = [i.kind for i in items]
    assert kinds.index("function_call") < kinds.index("decision") < kinds.index("function_call_output")
    # the supervisor saw the caller's question (transcript waited for) in the history it read
    state = svc.services.simulator.state
    assert any(user_q in str(body) for body in state.text_requests)
    assert_protocol_clean(svc)
    meta = await svc.services.history.get_meta(report.call_sid)
    assert meta["transport"] == "twilio" and meta["caller"] == scenario.caller_number
    assert report.marks_echoed > 0 and report.clears_received == 0


async def test_barge_in_truncates_at_heard_position(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    scenario = load_scenario("barge_in")
    settings = make_settings(simulator_scenario="barge_in")
    svc, report, items = await run_call(start_service, settings, scenario, speed=TIMING_SPEED)
    assert report.clears_received >= 1
    state = svc.services.simulator.state
    truncates = [e for e in state.client_events if e["type"] == "conversation.item.truncate"]
    assert len(truncates) == 1
    [truncate] = truncates
    interrupted = [i for i in items if i.status == "interrupted"]
    assert [i.id for i in interrupted] == [truncate["item_id"]]
    item = interrupted[0]
    assert item.audio_end_ms == truncate["audio_end_ms"]
    # The caller stopped listening 1200 ms into the answer (barge_in_after_ms minus the 770 ms
    # filler). Marks come per 100 ms chunk and turn detection needs ~60 ms of speech, so the
    # heard position is at or a little past 1200 ms. Wall-clock accounting would say ~150 ms
    # here (audio runs at 8x), and "everything sent" would say several seconds.
    assert 1200 <= item.audio_end_ms <= 1800
    assert item.full_text and item.text is not None and len(item.text) < len(item.full_text)
    assert item.full_text.startswith(item.text)
    # the server accepted the truncation (no "already shorter than" error)
    assert_protocol_clean(svc)
    # the call went on: the caller's next turn was answered after the interruption
    convo = conversation(items)
    assert convo[-1] == ("assistant", scenario.turns[-1].reply)


async def test_slow_supervisor_gets_one_hold_line(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    scenario = load_scenario("slow_supervisor").model_copy(update={"quiet_ms": 2000})
    settings = make_settings(
        simulator_scenario="slow_supervisor", hold_delay_s=0.8, supervisor_deadline_s=8.0
    )
    svc, report, items = await run_call(start_service, settings, scenario)
    holds = [i for i in items if i.kind == "hold_line"]
    assert [h.text for h in holds] == [HOLD_LINE_TEXT]
    [decision] = await svc.services.history.get_decisions(report.call_sid)
    assert decision.outcome == "ok"
    assert decision.latency_ms >= scenario.turns[-1].supervisor_delay_s * 1000
    # the answer came after the hold line
    answer = next(i for i in items if i.kind == "message" and i.text == decision.text)
    assert items.index(holds[0]) < items.index(answer)  # the answer came after the hold line
    assert_protocol_clean(svc)


async def test_supervisor_past_deadline_falls_back(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    scenario = load_scenario("supervisor_timeout").model_copy(update={"quiet_ms": 1800})
    settings = make_settings(
        simulator_scenario="supervisor_timeout", supervisor_deadline_s=1.0, hold_delay_s=5
    )
    svc, report, items = await run_call(start_service, settings, scenario)
    [decision] = await svc.services.history.get_decisions(report.call_sid)
    assert decision.outcome == "timeout"
    outputs = [i.output for i in items if i.kind == "function_call_output"]
    assert outputs == [decision.text]
    assert conversation(items)[-1] == ("assistant", decision.text)
    assert decision.text == FALLBACK_TEXT
    assert_protocol_clean(svc)


async def test_malformed_frames_and_bad_tool_arguments_keep_the_call_going(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    scenario = load_scenario("bad_tool_args")
    bad_frames = [
        "{not json",
        '{"event": "media"}',
        '{"event": 42}',
        '{"event":"media","media":{"payload":7}}',
        '["event"]',
        '{"event":"teleport"}',
    ]
    with capture_logs() as logs:
        svc, report, items = await run_call(
            start_service,
            make_settings(simulator_scenario="bad_tool_args"),
            scenario,
            extra_frames=bad_frames,
        )
    events = [entry["event"] for entry in logs]
    assert events.count("twilio.frame_invalid") == 5  # all but the unknown event type
    assert "call.tool_arguments_invalid" in events
    bad = next(e for e in logs if e["event"] == "call.tool_arguments_invalid")
    assert bad["call_id"] == report.call_sid
    # both factual turns were answered: the bad-arguments one from the caller's transcript
    decisions = await svc.services.history.get_decisions(report.call_sid)
    assert len(decisions) == 2
    assert all(d.outcome == "ok" for d in decisions)
    # invalid arguments: the supervisor was asked with what the caller actually said
    assert decisions[0].context == scenario.turns[0].say
    assert "twilio.event_ignored" in events
    outputs = [i.output for i in items if i.kind == "function_call_output"]
    assert len(outputs) == 2
    assert_protocol_clean(svc)
    structlog.reset_defaults()


async def test_dtmf_digits_are_recorded(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    scenario = load_scenario("dtmf")
    _, _, items = await run_call(start_service, make_settings(simulator_scenario="dtmf"), scenario)
    digits = [i.text for i in items if i.kind == "dtmf"]
    expected = [d for t in scenario.turns for d in (t.dtmf or "")]
    assert digits == expected


async def test_hang_up_during_supervisor_keeps_the_decision_and_drops_the_answer(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    scenario = load_scenario("slow_supervisor").model_copy(update={"quiet_ms": 300})
    settings = make_settings(simulator_scenario="slow_supervisor", hold_delay_s=10)
    with capture_logs() as logs:
        svc, report, items = await run_call(start_service, settings, scenario)
        history = svc.services.history
        await wait_until(lambda: history.get_decisions(report.call_sid), 10, 0.1)
        await wait_until(lambda: any(e["event"] == "call.late_result_dropped" for e in logs), 10, 0.05)
    [decision] = await history.get_decisions(report.call_sid)
    assert decision.outcome == "ok" and "returns@3" in decision.policy_labels()
    items = await history.get_items(report.call_sid)
    assert not [i for i in items if i.kind == "function_call_output"]
    assert (await history.get_meta(report.call_sid))["status"] == "ended"


async def test_barge_in_on_a_hold_line_cancels_it_without_truncating(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings], tmp_path: Any
) -> None:
    import yaml

    question = "Can I return a used tent if the rain fly is included?"
    raw = {
        "name": "hold_barge_in",
        "quiet_ms": 2500,
        "turns": [
            {"say": question, "supervisor_delay_s": 2.5},
            # "One moment." is 770 ms of audio: interrupt the hold line 600 ms into it
            {"say": "Okay, thanks", "reply": "You're welcome.", "barge_in_after_ms": 1370},
        ],
    }
    path = tmp_path / "hold_barge_in.yaml"
    path.write_text(yaml.safe_dump(raw))
    scenario = load_scenario(path)
    settings = make_settings(simulator_scenario=str(path), hold_delay_s=0.3)
    svc, report, items = await run_call(start_service, settings, scenario, speed=TIMING_SPEED)
    state = svc.services.simulator.state
    types = [e["type"] for e in state.client_events]
    assert report.clears_received >= 1
    assert "conversation.item.truncate" not in types  # a hold line is not in the conversation
    # the hold line was cut off (its transcript is the part generated before the cancel)
    [hold] = [i for i in items if i.kind == "hold_line"]
    assert hold.text and HOLD_LINE_TEXT.startswith(hold.text)
    [decision] = await svc.services.history.get_decisions(report.call_sid)
    assert decision.outcome == "ok"
    assert [i.output for i in items if i.kind == "function_call_output"] == [decision.text]
    assert ("assistant", "You're welcome.") in conversation(items)
    assert conversation(items)[-1] == ("assistant", decision.text)
    assert_protocol_clean(svc)


@pytest.mark.parametrize(("wait_s", "sees_question"), [(2.0, True), (0.05, False)])
async def test_supervisor_waits_for_the_late_user_transcript(
    start_service: Callable[..., Any],
    make_settings: Callable[..., Settings],
    tmp_path: Any,
    wait_s: float,
    sees_question: bool,
) -> None:
    import json

    import yaml

    question = "Can I return a tent I already used on a camping trip?"
    raw = {
        "name": "late_transcript",
        "turns": [
            {
                "say": question,
                # the transcript lands ~500 ms (wall) after the tool call, as it can on real calls
                # (audio ms: 6000 at the timing speed, scaled so that the wall-clock delay stays)
                "transcript_delay_ms": int(6000 * FAST_SPEED / TIMING_SPEED),
                "tool_arguments": json.dumps({"relevantContextFromLastUserMessage": "returning used gear"}),
            }
        ],
    }
    path = tmp_path / "late.yaml"
    path.write_text(yaml.safe_dump(raw))
    settings = make_settings(simulator_scenario=str(path), transcript_wait_s=wait_s)
    with capture_logs() as logs:
        svc, report, _ = await run_call(start_service, settings, load_scenario(path))
    requests = svc.services.simulator.state.text_requests
    assert requests, "the supervisor was asked"
    # the question's words reach the supervisor only through the transcript in Redis history
    assert (question in json.dumps(requests[0])) is sees_question
    expired = any(e["event"] == "call.transcript_wait_expired" for e in logs)
    assert expired is not sees_question
    [decision] = await svc.services.history.get_decisions(report.call_sid)
    assert decision.context == "returning used gear"


async def test_realtime_unreachable_ends_the_call_cleanly_and_records_it(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    from aiohttp.test_utils import unused_port

    dead = f"http://127.0.0.1:{unused_port()}/v1"
    settings = make_settings(openai_api_key="sk-test-not-used", openai_base_url=dead)
    svc: RunningService = await start_service(settings)
    with capture_logs() as logs:
        report = await place_call(svc.url, load_scenario("returns"), auth_token=AUTH_TOKEN, speed=svc.speed)
    assert report.hung_up_by_service
    failed = [e for e in logs if e["event"] == "call.realtime_failed"]
    assert failed and failed[0]["call_id"] == report.call_sid
    meta = await svc.services.history.get_meta(report.call_sid)
    assert meta["status"] == "failed"
    assert "sk-test-not-used" not in repr(logs)
