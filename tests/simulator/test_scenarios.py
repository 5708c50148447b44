"""The built-in scenarios load, and encode what their tests rely on."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from simulator.realtime_response import SUPERVISOR_TOOL, speech_ms
from simulator.scenario import SCENARIO_DIR, load_scenario

BUILT_IN = [
    "returns",
    "barge_in",
    "slow_supervisor",
    "supervisor_timeout",
    "bad_tool_args",
    "dtmf",
    "escalate",
    "hangup",
]


@pytest.mark.parametrize("name", BUILT_IN)
def test_built_in_scenarios_load(name: str) -> None:
    scenario = load_scenario(name)
    assert scenario.name == name and scenario.turns
    assert "Northwind Outfitters" in scenario.greeting


def test_every_scenario_file_is_listed() -> None:
    assert sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml")) == sorted(BUILT_IN)


def test_barge_in_interrupts_about_1200_ms_into_the_answer() -> None:
    question, interruption = load_scenario("barge_in").turns
    assert question.reply is None and interruption.reply
    assert interruption.barge_in_after_ms == speech_ms(question.filler) + 1200


@pytest.mark.parametrize(("name", "tool"), [("escalate", "escalate_to_human"), ("hangup", "end_call")])
def test_control_scenarios_end_with_their_tool(name: str, tool: str) -> None:
    first, last = load_scenario(name).turns
    assert first.reply is None and first.tool == SUPERVISOR_TOOL  # answered by the supervisor
    assert last.reply is None and last.tool == tool


def test_bad_scenarios_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"built-in: .*returns"):
        load_scenario("no-such-scenario")
    typo = tmp_path / "typo.yaml"
    typo.write_text("name: t\nturns:\n  - say: hi\n    replly: hello\n")
    with pytest.raises(ValidationError, match="replly"):
        load_scenario(typo)


def test_turn_matching_by_caller_text() -> None:
    scenario = load_scenario("returns")
    factual = scenario.turns[1]
    assert scenario.turn_for_text("  " + factual.say.upper() + " ") is factual
    assert scenario.turn_for_text("relevant: " + factual.say) is factual
    assert scenario.turn_for_text("something else entirely") is None
