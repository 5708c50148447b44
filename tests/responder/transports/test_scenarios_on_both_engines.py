"""Every built-in scenario (simulator/scenarios/) as a phone call on both engines, Realtime and
GPT-Live, through the real service and the simulator, with what must hold on either: the
caller's turns recorded in order, answers grounded by the supervisor (or its fallback past the
deadline), progress while the supervisor is slow, barge-in cut at what was heard, key presses
recorded, and not one client event invalid or refused by the simulator. The engine-specific
details stay in test_phone_call.py (Realtime) and test_live_calls.py (Live).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from callrecord.decisions import Decision
from callrecord.history import HistoryItem
from infra.settings import Settings
from responder.core.controller import FALLBACK_TEXT, HOLD_LINE_TEXT
from simulator.scenario import Scenario, load_scenario
from tests.support.calls import assert_protocol_clean, conversation, run_call
from tests.support.service import FAST_SPEED, TIMING_SPEED, RunningService

ENGINES = ("realtime", "live")
# per scenario: the service's settings and the speed (barge-in positions need the slower one)
SETUP: dict[str, tuple[dict[str, Any], float]] = {
    "returns": ({}, FAST_SPEED),
    "barge_in": ({}, TIMING_SPEED),
    "slow_supervisor": ({"hold_delay_s": 0.8, "supervisor_deadline_s": 8.0}, FAST_SPEED),
    "supervisor_timeout": ({"hold_delay_s": 5.0, "supervisor_deadline_s": 1.0}, FAST_SPEED),
    "bad_tool_args": ({}, FAST_SPEED),
    "dtmf": ({}, FAST_SPEED),
}


def assert_engine_clean(svc: RunningService, engine: str) -> None:
    state = svc.services.simulator.state
    if engine == "realtime":
        assert_protocol_clean(svc)
        assert state.live_client_events == []
        return
    assert state.live_invalid_events == [], state.live_invalid_events
    assert state.live_refused_events == [], state.live_refused_events
    assert state.client_events == []  # nothing went to the Realtime API


def assistant_said(items: list[HistoryItem]) -> list[str]:
    return [text for role, text in conversation(items) if role == "assistant"]


def check_returns(scenario: Scenario, items: list[HistoryItem], decisions: list[Decision], svc: Any) -> None:
    [decision] = decisions  # chitchat never reached the supervisor
    assert decision.outcome == "ok" and "returns@3" in decision.policy_labels()
    assert ("assistant", scenario.turns[0].reply) in conversation(items)
    assert assistant_said(items)[-1].endswith(decision.text)  # Live: the acknowledgement may run into it


def check_barge_in(scenario: Scenario, items: list[HistoryItem], decisions: list[Decision], svc: Any) -> None:
    [decision] = decisions
    [cut] = [i for i in items if i.status == "interrupted"]
    assert cut.role == "assistant" and cut.audio_end_ms is not None and cut.audio_end_ms > 0
    assert cut.full_text and cut.text is not None and cut.full_text.startswith(cut.text)
    # what the caller heard: the start of the answer, not all of it (measured against the
    # answer itself: on Live the transcript known at the barge-in depends on where the model's
    # transcript fragments fall, a few words each)
    heard = cut.text.removeprefix(scenario.turns[0].filler or "").strip()
    assert heard and decision.text.startswith(heard) and len(heard) < len(decision.text)
    assert conversation(items)[-1] == ("assistant", scenario.turns[-1].reply)  # the call went on


def check_slow_supervisor(
    scenario: Scenario, items: list[HistoryItem], decisions: list[Decision], svc: Any
) -> None:
    [decision] = decisions
    assert decision.outcome == "ok" and "returns@3" in decision.policy_labels()
    assert decision.latency_ms >= scenario.turns[-1].supervisor_delay_s * 1000
    assert assistant_said(items)[-1].endswith(decision.text)
    # progress, never dead air: Realtime says one hold line out of band; Live gets one silent
    # note for the delegation (its acknowledgement already spoke)
    holds = [i.text for i in items if i.kind == "hold_line"]
    notes = [e for e in svc.services.simulator.state.live_client_events
             if e["type"] == "session.thinking.append" and HOLD_LINE_TEXT in e["content"]]  # fmt: skip
    assert (holds, len(notes)) in (([HOLD_LINE_TEXT], 0), ([], 1))


def check_supervisor_timeout(
    scenario: Scenario, items: list[HistoryItem], decisions: list[Decision], svc: Any
) -> None:
    [decision] = decisions
    assert decision.outcome == "timeout" and decision.text == FALLBACK_TEXT
    assert [i.output for i in items if i.kind == "function_call_output"] == [FALLBACK_TEXT]
    assert assistant_said(items)[-1].endswith(FALLBACK_TEXT)  # spoken past the deadline


def check_bad_tool_args(
    scenario: Scenario, items: list[HistoryItem], decisions: list[Decision], svc: Any
) -> None:
    assert [d.outcome for d in decisions] == ["ok", "ok"]  # both factual turns answered
    assert decisions[0].context == scenario.turns[0].say  # from what the caller said
    assert len([i for i in items if i.kind == "function_call_output"]) == 2


def check_dtmf(scenario: Scenario, items: list[HistoryItem], decisions: list[Decision], svc: Any) -> None:
    assert [i.text for i in items if i.kind == "dtmf"] == ["1"]
    assert ("assistant", scenario.turns[0].reply) in conversation(items)
    assert decisions == []


CHECKS = {
    "returns": check_returns,
    "barge_in": check_barge_in,
    "slow_supervisor": check_slow_supervisor,
    "supervisor_timeout": check_supervisor_timeout,
    "bad_tool_args": check_bad_tool_args,
    "dtmf": check_dtmf,
}


@pytest.mark.parametrize("name", list(SETUP))
@pytest.mark.parametrize("engine", ENGINES)
async def test_the_scenario_runs_on_the_engine(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings], engine: str, name: str
) -> None:
    scenario = load_scenario(name)
    overrides, speed = SETUP[name]
    settings = make_settings(engine=engine, simulator_scenario=name, **overrides)
    svc, report, items = await run_call(start_service, settings, scenario, speed=speed)
    meta = await svc.services.history.get_meta(report.call_sid)
    assert meta["engine"] == engine and meta["status"] == "ended"
    said = conversation(items)
    assert said[0] == ("assistant", scenario.greeting)
    users = [text for role, text in said if role == "user"]
    assert users == [t.say for t in scenario.turns]  # every caller turn, in order
    decisions = await svc.services.history.get_decisions(report.call_sid)
    assert all(d.trigger == ("tool_call" if engine == "realtime" else "delegation") for d in decisions)
    CHECKS[name](scenario, items, decisions, svc)
    assert_engine_clean(svc, engine)


def test_every_built_in_scenario_is_covered() -> None:
    from pathlib import Path

    import simulator

    built_in = {p.stem for p in (Path(simulator.__file__).parent / "scenarios").glob("*.yaml")}
    # escalate and hangup need a Twilio REST stand-in: tests/responder/core/test_call_actions.py
    # (Realtime) and tests/responder/transports/test_live_call_control.py (Live)
    assert built_in - {"escalate", "hangup"} == set(SETUP)
