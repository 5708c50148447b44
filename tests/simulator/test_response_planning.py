"""What the simulated responder says and which tool it calls (pure planning, no sockets)."""

from __future__ import annotations

import json

from simulator.realtime_response import (
    CANNOT_CHECK,
    SUPERVISOR_TOOL,
    FunctionCall,
    Speech,
    plan_outputs,
    tool_call_for,
)
from simulator.scenario import Turn, load_scenario

ALL_TOOLS = [SUPERVISOR_TOOL, "escalate_to_human", "end_call"]


def test_turn_tool_is_called_with_a_reason_when_declared() -> None:
    bye = load_scenario("hangup").turns[-1]
    call = tool_call_for(bye, ALL_TOOLS)
    assert call == FunctionCall("end_call", json.dumps({"reason": bye.say}))
    person = load_scenario("escalate").turns[-1]
    escalate = tool_call_for(person, ALL_TOOLS)
    assert escalate is not None and escalate.name == "escalate_to_human"
    assert json.loads(escalate.arguments) == {"reason": person.say}


def test_undeclared_turn_tool_falls_back_to_the_supervisor() -> None:
    bye = Turn(say="Bye now.", tool="end_call")
    fallback = tool_call_for(bye, [SUPERVISOR_TOOL, "escalate_to_human"])
    assert fallback == FunctionCall(
        SUPERVISOR_TOOL, json.dumps({"relevantContextFromLastUserMessage": "Bye now."})
    )
    assert tool_call_for(bye, []) is None
    outputs, source = plan_outputs(
        instructions=None, pending_outputs=[], turn=bye, had_user_turn=True, tool_names=[], greeting="Hi."
    )
    assert (outputs, source) == ([Speech(CANNOT_CHECK)], "no_tool")


def test_tool_arguments_override_applies_to_any_tool() -> None:
    turn = Turn(say="Transfer me.", tool="escalate_to_human", tool_arguments="{broken")
    assert tool_call_for(turn, ALL_TOOLS) == FunctionCall("escalate_to_human", "{broken")


def test_filler_comes_before_the_tool_call() -> None:
    turn = Turn(say="Get me a human.", filler="Sure, one moment.", tool="escalate_to_human")
    outputs, source = plan_outputs(
        instructions=None,
        pending_outputs=[],
        turn=turn,
        had_user_turn=True,
        tool_names=ALL_TOOLS,
        greeting="",
    )
    assert source == "tool_call"
    assert outputs[0] == Speech("Sure, one moment.") and isinstance(outputs[1], FunctionCall)
    assert outputs[1].name == "escalate_to_human"


def test_say_exactly_wins_over_pending_tool_output() -> None:
    outputs, source = plan_outputs(
        instructions='Tell the caller goodbye. Say exactly: "Goodbye, take care."',
        pending_outputs=['{"status": "ending"}'],
        turn=None,
        had_user_turn=True,
        tool_names=ALL_TOOLS,
        greeting="",
    )
    assert (outputs, source) == ([Speech("Goodbye, take care.")], "say_exactly")
