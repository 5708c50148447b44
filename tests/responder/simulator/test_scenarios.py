"""The built-in scenarios load, and encode what their tests rely on."""

from __future__ import annotations

import json

import pytest

from responder.simulator.realtime_response import speech_ms
from responder.simulator.scenario import SCENARIO_DIR, load_scenario

BUILT_IN = ["returns", "barge_in", "slow_supervisor", "supervisor_timeout", "bad_tool_args", "dtmf"]


@pytest.mark.parametrize("name", BUILT_IN)
def test_built_in_scenarios_load(name: str) -> None:
    scenario = load_scenario(name)
    assert scenario.name == name and scenario.turns
    assert "Northwind Outfitters" in scenario.greeting


def test_every_scenario_file_is_listed() -> None:
    assert sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml")) == sorted(BUILT_IN)


def test_returns_demo_has_chitchat_then_a_factual_turn() -> None:
    chitchat, factual = load_scenario("returns").turns
    assert chitchat.say == "Hi, how are you today?" and chitchat.reply
    assert factual.say == "Can I return a tent I already used on a camping trip?" and factual.reply is None


def test_barge_in_interrupts_about_1200_ms_into_the_answer() -> None:
    question, interruption = load_scenario("barge_in").turns
    assert question.reply is None and interruption.reply
    assert interruption.barge_in_after_ms == speech_ms(question.filler) + 1200


def test_special_turns() -> None:
    assert load_scenario("slow_supervisor").turns[0].supervisor_delay_s == 2.5
    assert load_scenario("supervisor_timeout").turns[0].supervisor_delay_s == 30
    bad, good = load_scenario("bad_tool_args").turns
    assert bad.tool_arguments == "{not json" and good.tool_arguments is None
    with pytest.raises(ValueError):
        json.loads(bad.tool_arguments)
    assert load_scenario("dtmf").turns[0].dtmf == "1"
