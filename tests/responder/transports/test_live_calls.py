"""Calls on the GPT-Live engine through the real service, against the simulator's Live double:
the Twilio phone path (μ-law passed through) and the PCM16 WebSocket, a delegation answered by
the supervisor, a turn never delegated (recovered), a slow supervisor and its fallback.

Every client event the service sends is validated by the double against ``openai.types.live``;
the tests assert that none was invalid and none was refused.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from structlog.testing import capture_logs

from callrecord.history import HistoryItem
from infra.settings import Settings
from responder.core.sessions import MAX_DROPS_PER_CALL
from responder.trace import render_text, trace_from_redis
from simulator.scenario import Scenario, Turn, load_scenario
from tests.support.calls import conversation, ended_call_items, run_call
from tests.support.service import TIMING_SPEED, RunningService
from tests.support.waits import wait_until
from tests.support.websocket_calls import PcmClient, scenario_script, ws_call


def assert_live_clean(svc: RunningService) -> None:
    state = svc.services.simulator.state
    assert state.live_invalid_events == [], state.live_invalid_events
    assert state.live_refused_events == [], state.live_refused_events
    types = [e["type"] for e in state.live_client_events]
    assert types[0] == "session.start" and "session.input_audio.append" in types
    assert state.client_events == []  # nothing went to the Realtime API


def live(make_settings: Callable[..., Settings], **overrides: Any) -> Settings:
    return make_settings(engine="live", **overrides)


def handovers(items: list[HistoryItem]) -> list[HistoryItem]:
    return [i for i in items if i.kind == "function_call"]


async def test_a_phone_call_on_live_is_grounded_by_the_supervisor(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    scenario = load_scenario("returns")
    svc, report, items = await run_call(start_service, live(make_settings), scenario)
    meta = await svc.services.history.get_meta(report.call_sid)
    assert meta["engine"] == "live" and meta["status"] == "ended"
    said = conversation(items)
    assert said[0] == ("assistant", scenario.greeting)
    assert ("user", scenario.turns[1].say) in said
    [delegation] = handovers(items)
    [decision] = await svc.services.history.get_decisions(report.call_sid)
    assert decision.trigger == "delegation" and decision.outcome == "ok"
    assert "returns@3" in decision.policy_labels()
    [output] = [i for i in items if i.kind == "function_call_output"]
    assert output.tool_call_id == delegation.tool_call_id and output.output == decision.text
    role, text = said[-1]  # the model spoke the commentary (after its acknowledgement, if any)
    assert role == "assistant" and text.endswith(decision.text)
    [session] = svc.services.simulator.state.live_sessions
    [answered] = session.delegations.values()
    assert answered.id == delegation.tool_call_id and answered.commentary == [decision.text]
    trace = await trace_from_redis(svc.services.history, report.call_sid)
    assert trace is not None and trace.engine == "live"
    shown = render_text(trace)  # the trace shows the delegation and the commentary as such
    assert f"delegation   {delegation.tool_call_id}" in shown and "commentary" in shown
    assert_live_clean(svc)


async def test_a_turn_the_model_never_delegates_is_recovered(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    scenario = Scenario(name="live_recovery", quiet_ms=2500, turns=[
        Turn(say="Can I return a tent I already used on a camping trip?", live_delegates=False),
    ])  # fmt: skip
    path = tmp_path / "live_recovery.yaml"
    path.write_text(yaml.safe_dump(scenario.model_dump(exclude_defaults=True)))
    settings = live(make_settings, live_recovery_s=0.5, simulator_scenario=str(path))
    svc, report, items = await run_call(start_service, settings, scenario)
    [decision] = await svc.services.history.get_decisions(report.call_sid)
    assert decision.trigger == "recovered" and "returns@3" in decision.policy_labels()
    [session] = svc.services.simulator.state.live_sessions
    assert session.delegations == {}
    general = [e for e in svc.services.simulator.state.live_client_events
               if e["type"] == "session.commentary.append" and e["delegation_id"] is None]  # fmt: skip
    assert decision.text in [e["content"] for e in general]
    assert conversation(items)[-1] == ("assistant", decision.text)
    assert_live_clean(svc)


async def test_a_slow_supervisor_gets_one_hold_line_and_a_late_one_the_fallback(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    scenario = load_scenario("supervisor_timeout")
    settings = live(make_settings, hold_delay_s=0.5, supervisor_deadline_s=1.5,
                    simulator_scenario="supervisor_timeout")  # fmt: skip
    svc, report, items = await run_call(start_service, settings, scenario)
    [decision] = await svc.services.history.get_decisions(report.call_sid)
    assert decision.outcome == "timeout" and decision.trigger == "delegation"
    [delegation] = handovers(items)
    events = svc.services.simulator.state.live_client_events
    commentary = [e for e in events if e["type"] == "session.commentary.append"]
    # progress is one silent note for the delegation (the model may say a hold line itself);
    # a commentary would be taken for the answer
    thinking = [e for e in events if e["type"] == "session.thinking.append"]
    [hold] = [e for e in thinking if "still checking" in e["content"]]
    assert hold["delegation_id"] == delegation.tool_call_id
    assert not [e for e in commentary if "still checking" in e["content"]]
    [answer] = [e for e in commentary if e["delegation_id"] is not None]
    assert answer["content"] == decision.text  # the fallback, for the delegation
    said = [text for role, text in conversation(items) if role == "assistant"]
    after_greeting = " ".join(said[1:])  # never dead air: the acknowledgement first, then the fallback
    assert 0 <= after_greeting.index(scenario.turns[0].filler) < after_greeting.index(decision.text)
    assert said[-1].endswith(decision.text)  # past the deadline, the fallback is spoken
    assert_live_clean(svc)


async def test_a_browser_websocket_call_on_live(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    scenario = load_scenario("returns")
    svc = await start_service(make_settings(engine="realtime"))  # the call itself asks for Live
    report = await ws_call(svc, scenario_script(scenario), engine="live")
    items = await ended_call_items(svc, report.call_id)
    assert (await svc.services.history.get_meta(report.call_id))["engine"] == "live"
    [decision] = await svc.services.history.get_decisions(report.call_id)
    assert decision.trigger == "delegation" and "returns@3" in decision.policy_labels()
    role, text = conversation(items)[-1]  # the acknowledgement may run into the answer
    assert role == "assistant" and text.endswith(decision.text)
    starts = [e for e in svc.services.simulator.state.live_client_events if e["type"] == "session.start"]
    assert starts[0]["session"]["audio"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert_live_clean(svc)


async def test_barge_in_on_live_stops_the_agent_for_the_caller_and_keeps_what_was_heard(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    """GPT-Live sends no barge-in event: the model stops its own speech. The service sees the
    caller's words arrive while the agent is speaking, clears Twilio's buffer at once (the
    caller hears nothing more of that utterance), and records the utterance as interrupted with
    the part the caller heard (acknowledged marks)."""
    scenario = load_scenario("barge_in")
    settings = live(make_settings, simulator_scenario="barge_in")
    svc, report, items = await run_call(start_service, settings, scenario, speed=TIMING_SPEED)
    assert report.clears_received >= 1
    [cut] = [i for i in items if i.status == "interrupted"]
    assert cut.role == "assistant" and cut.audio_end_ms is not None and cut.audio_end_ms > 0
    assert cut.full_text and cut.text is not None and cut.full_text.startswith(cut.text)
    # heard: only the start of the answer. Measured against the answer, not against the
    # transcript known at the barge-in: that depends on where the model's fragments (a few
    # words each, ahead of their audio) fall against the moment the caller spoke, which is
    # not what this test is about
    [decision] = await svc.services.history.get_decisions(report.call_sid)
    heard = cut.text.removeprefix(scenario.turns[0].filler or "").strip()
    assert heard and decision.text.startswith(heard) and len(heard) < len(decision.text)
    [session] = svc.services.simulator.state.live_sessions
    assert any(turn.barged_in for turn in session.caller_turns)  # the model heard the caller over it
    assert conversation(items)[-1] == ("assistant", scenario.turns[-1].reply)  # the call went on
    assert_live_clean(svc)


async def test_a_session_start_never_confirmed_fails_the_call_through_its_normal_path(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc = await start_service(make_settings(engine="live", live_session_start_timeout_s=0.3))
    state = svc.services.simulator.state
    state.live_unconfirmed_starts = 100  # the server takes session.start and never answers

    async def script(client: PcmClient) -> None:
        await wait_until(client.closed.is_set, 20, what="the call's end")

    report = await ws_call(svc, script, engine="live")
    assert report.ended == {"type": "ended", "reason": "realtime_failed"}
    meta = await svc.services.history.get_meta(report.call_id)
    assert meta["status"] == "ended" and meta["end_reason"] == "realtime_failed"
    # each new session is a drop of its own: the first and one per drop allowed, then the end
    assert len(state.live_sessions) == 1 + MAX_DROPS_PER_CALL
    assert not any(s.started for s in state.live_sessions)
    assert state.live_invalid_events == []
    # nothing but the goodbye was sent to a session that never started (audio was held)
    assert {e["type"] for e in state.live_refused_events} <= {"session.close"}


async def test_a_call_whose_first_session_never_starts_goes_on_on_the_next(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    scenario = load_scenario("returns")
    svc = await start_service(make_settings(engine="live", live_session_start_timeout_s=0.3))
    state = svc.services.simulator.state
    state.live_unconfirmed_starts = 1
    report = await ws_call(svc, scenario_script(scenario), engine="live")
    await ended_call_items(svc, report.call_id)
    [decision] = await svc.services.history.get_decisions(report.call_id)
    assert decision.trigger == "delegation" and "returns@3" in decision.policy_labels()
    first, second = state.live_sessions
    assert not first.started and second.started
    assert state.live_invalid_events == []
    assert {e["type"] for e in state.live_refused_events} <= {"session.close"}


async def test_an_answer_after_the_caller_hung_up_is_dropped_and_logged_on_live(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    scenario = load_scenario("slow_supervisor").model_copy(update={"quiet_ms": 300})
    settings = live(make_settings, simulator_scenario="slow_supervisor", hold_delay_s=10)
    with capture_logs() as logs:
        svc, report, _ = await run_call(start_service, settings, scenario)
        history = svc.services.history
        await wait_until(lambda: history.get_decisions(report.call_sid), 10, 0.1, what="the decision")
        await wait_until(lambda: [e for e in logs if e["event"] == "call.late_result_dropped"], 10, 0.05,
                         what="the dropped answer")  # fmt: skip
    [dropped] = [e for e in logs if e["event"] == "call.late_result_dropped"]
    assert dropped["reason"] == "call ended"
    [decision] = await history.get_decisions(report.call_sid)  # kept for the audit trail
    assert decision.outcome == "ok" and decision.trigger == "delegation"
    items = await history.get_items(report.call_sid)
    assert not [i for i in items if i.kind == "function_call_output"]
    answers = [e for e in svc.services.simulator.state.live_client_events
               if e["type"] == "session.commentary.append" and e["delegation_id"] is not None]  # fmt: skip
    assert answers == []
    assert_live_clean(svc)
