"""The supervisor end to end: Redis history → text model (the simulator's double, via the SDK) → Decision."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Sequence
from typing import Any

import pytest
from structlog.testing import capture_logs

from callrecord.history import CallHistory, HistoryItem
from simulator.scenario import Turn
from supervisor.agent import FALLBACK_TEXT, Supervisor, build_supervisor, build_transcript, load_instructions
from supervisor.model import Item, Message, ModelTurn, ToolCall
from supervisor.policies import PolicyLibrary
from supervisor.tools import Tool, ToolRegistry, ToolResult, ToolSpec, string_params
from tests.support.supervisor import TENT_QUESTION, StartTextModel


async def seed_call(history: CallHistory, call_id: str) -> None:
    await history.add_item(
        call_id,
        HistoryItem(
            id="a0",
            kind="message",
            role="assistant",
            text="Thanks for calling Northwind Outfitters. How can I help?",
        ),
    )
    await history.add_item(
        call_id,
        HistoryItem(
            id="u1", kind="message", role="user", text="Hi, I bought a tent last month and slept in it once."
        ),
    )
    await history.add_item(call_id, HistoryItem(id="u2", kind="message", role="user", text=TENT_QUESTION))


@pytest.mark.parametrize("api", ["responses", "chat"])
async def test_decision_answers_from_policy_in_both_api_modes(
    api: str, start_text_model: StartTextModel, history: CallHistory
) -> None:
    sim = await start_text_model()
    await seed_call(history, "call-1")
    supervisor = build_supervisor(
        history, api_key="sk-test", model="gpt-test", base_url=sim.base_url, api=api
    )  # type: ignore[arg-type]

    with capture_logs() as logs:
        decision = await supervisor.decide("call-1", TENT_QUESTION, user_item_id="u2")

    assert decision.outcome == "ok" and decision.error is None
    assert (decision.api, decision.model, decision.rounds, decision.user_item_id) == (
        api,
        "gpt-test",
        2,
        "u2",
    )
    assert "returns@3" in decision.policy_labels()
    assert decision.citations == ["returns@3"]
    assert "60 days" in decision.text and "tent" in decision.text
    for mark in ("**", "[", "]", "@3", "- ", "\n"):
        assert mark not in decision.text
    assert "[policy:returns@3]" in decision.raw_text
    [record] = decision.tool_calls
    assert record.name == "lookupPolicyDocument" and record.ok
    assert record.arguments == {"topic": TENT_QUESTION} and len(record.result_summary) <= 200
    assert record.result_summary.startswith("returns@3 Trail Tested guarantee")
    assert decision.usage.input_tokens > 0 and decision.usage.output_tokens > 0 and decision.latency_ms > 0

    # stored on the call in Redis
    [stored] = await history.get_decisions("call-1")
    assert stored.decision_id == decision.decision_id and stored.text == decision.text
    assert (await history.get_items("call-1"))[-1].kind == "decision"

    # the model saw the call history and the context
    request = json.dumps(sim.state.text_requests[0])
    assert "slept in it once" in request and "relevantContextFromLastUserMessage: Can I return" in request

    events = [e for e in logs if e.get("decision_id") == decision.decision_id]
    assert [e["event"] for e in events] == [
        "supervisor.round",
        "supervisor.tool",
        "supervisor.round",
        "supervisor.decision",
    ]
    assert all(e["call_id"] == "call-1" for e in events)


async def test_previous_decisions_are_summarised_for_the_next_run(
    start_text_model: StartTextModel, history: CallHistory
) -> None:
    sim = await start_text_model(Turn(say=TENT_QUESTION), Turn(say="How much is expedited shipping?"))
    supervisor = build_supervisor(history, api_key="sk-test", model="m", base_url=sim.base_url, api="chat")
    await seed_call(history, "call-2")
    first = await supervisor.decide("call-2", TENT_QUESTION)
    await history.add_item(
        "call-2",
        HistoryItem(id="u3", kind="message", role="user", text="And how much is expedited shipping?"),
    )
    second = await supervisor.decide("call-2", "How much is expedited shipping?")
    assert "shipping@2" in second.policy_labels() and "$14.95" in second.text
    messages = sim.state.text_requests[-2]["messages"]
    notes = [
        m["content"]
        for m in messages
        if m["role"] == "system" and "earlier supervisor decision" in m["content"]
    ]
    assert notes == [
        f"[earlier supervisor decision, outcome ok, policies {', '.join(first.policy_labels())}]: "
        f"{first.text}"
    ]


async def test_slow_model_hits_the_deadline(start_text_model: StartTextModel, history: CallHistory) -> None:
    sim = await start_text_model(Turn(say=TENT_QUESTION, supervisor_delay_s=3.0))
    supervisor = build_supervisor(
        history, api_key="sk-test", model="m", base_url=sim.base_url, deadline_s=0.5
    )
    started = time.perf_counter()
    decision = await supervisor.decide("call-3", TENT_QUESTION)
    assert time.perf_counter() - started < 1.5
    assert decision.outcome == "timeout" and "0.5s" in (decision.error or "")
    assert decision.text == FALLBACK_TEXT
    assert [d.outcome for d in await history.get_decisions("call-3")] == ["timeout"]


async def test_unreachable_model_is_an_error_with_fallback(history: CallHistory) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    supervisor = build_supervisor(
        history, api_key="sk-test", model="m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0
    )
    decision = await supervisor.decide("call-4", TENT_QUESTION)
    assert decision.outcome == "error" and "APIConnectionError" in (decision.error or "")
    assert decision.text == FALLBACK_TEXT and decision.rounds == 1
    [stored] = await history.get_decisions("call-4")
    assert stored.outcome == "error"


async def test_exhausted_rounds_fall_back(start_text_model: StartTextModel, history: CallHistory) -> None:
    sim = await start_text_model()
    supervisor = build_supervisor(history, api_key="sk-test", model="m", base_url=sim.base_url, max_rounds=1)
    decision = await supervisor.decide("call-5", TENT_QUESTION)
    assert decision.outcome == "fallback" and decision.rounds == 1
    assert decision.text == FALLBACK_TEXT
    assert [t.name for t in decision.tool_calls] == ["lookupPolicyDocument"]
    assert "returns@3" in decision.policy_labels()  # what was consulted is still on record
    assert len(sim.state.text_requests) == 1
    assert (await history.get_decisions("call-5"))[0].outcome == "fallback"


class ScriptedModel:
    """A scripted text model (like openai-agents' fake model): returns the given turns in order."""

    def __init__(self, *turns: ModelTurn) -> None:
        self.turns = list(turns)
        self.seen: list[list[Item]] = []

    async def complete(
        self, instructions: str, messages: Sequence[Item], tools: Sequence[ToolSpec]
    ) -> ModelTurn:
        self.seen.append(list(messages))
        return self.turns.pop(0)


async def test_tool_calls_of_a_round_run_in_parallel(history: CallHistory) -> None:
    async def slow(args: dict[str, Any]) -> ToolResult:
        await asyncio.sleep(0.3)
        return ToolResult(output=f"done {args['q']}")

    tools = ToolRegistry([Tool(ToolSpec("slow", "sleeps", string_params(q="q")), slow)])
    model = ScriptedModel(
        ModelTurn(
            tool_calls=[
                ToolCall("c1", "slow", '{"q": "a"}'),
                ToolCall("c2", "slow", '{"q": "b"}'),
                ToolCall("c3", "slow", "{broken"),
            ]
        ),
        ModelTurn(text="Both are **done**."),
    )
    supervisor = Supervisor(model, tools, history, model_name="scripted", api="test", instructions="x")
    started = time.perf_counter()
    decision = await supervisor.decide("call-6", "do both")
    assert time.perf_counter() - started < 0.55
    assert decision.outcome == "ok" and decision.text == "Both are done."
    assert sorted(
        (t.arguments if isinstance(t.arguments, str) else t.arguments["q"], t.ok) for t in decision.tool_calls
    ) == [("a", True), ("b", True), ("{broken", False)]
    outputs = [getattr(i, "output", None) for i in model.seen[1][-3:]]
    assert outputs[:2] == ["done a", "done b"] and "not valid JSON" in (outputs[2] or "")


async def test_a_decision_lets_the_loop_run_between_its_pieces_of_work(history: CallHistory) -> None:
    """Reading the history, each model request and each reply are separate loop steps: every
    other call's frames get a turn between them even when nothing in between suspends (a
    model and tools that answer at once)."""
    turns = 0
    seen_at: list[tuple[str, int]] = []

    async def ticker() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    class Instant(ScriptedModel):
        async def complete(
            self, instructions: str, messages: Sequence[Item], tools: Sequence[ToolSpec]
        ) -> ModelTurn:
            seen_at.append(("model", turns))
            return await super().complete(instructions, messages, tools)

    async def lookup(args: dict[str, Any]) -> ToolResult:
        seen_at.append(("tool", turns))
        return ToolResult(output="found")

    tools = ToolRegistry([Tool(ToolSpec("lookup", "finds", string_params(q="q")), lookup)])
    model = Instant(ModelTurn(tool_calls=[ToolCall("c1", "lookup", '{"q": "a"}')]), ModelTurn(text="Found."))
    supervisor = Supervisor(model, tools, history, model_name="scripted", api="test", instructions="x")
    reading = history.get_items

    async def get_items(*args: Any, **kwargs: Any) -> list[HistoryItem]:
        items = await reading(*args, **kwargs)
        seen_at.append(("history", turns))
        return items

    history.get_items = get_items  # type: ignore[method-assign]
    tick = asyncio.create_task(ticker())
    try:
        decision = await supervisor.decide("call-yields", "find it")
    finally:
        tick.cancel()
    assert decision.outcome == "ok" and decision.text == "Found."
    assert [name for name, _ in seen_at] == ["history", "model", "tool", "model"]
    at = [n for _, n in seen_at]
    assert at[0] < at[1] < at[2] < at[3]  # the loop ran between each piece and the next


async def test_empty_answer_falls_back(history: CallHistory) -> None:
    supervisor = Supervisor(
        ScriptedModel(ModelTurn(text="[policy:returns@3]")),
        ToolRegistry(),
        history,
        model_name="scripted",
        api="test",
        instructions="x",
    )
    decision = await supervisor.decide("call-7", "anything")
    assert decision.outcome == "fallback" and decision.text == FALLBACK_TEXT


def test_transcript_keeps_the_newest_within_budget() -> None:
    items = [
        HistoryItem(id=f"u{n}", kind="message", role="user", text=f"message number {n} " + "x" * 30)
        for n in range(10)
    ]
    items.append(
        HistoryItem(id="a", kind="message", role="assistant", text="Let me check", status="interrupted")
    )
    items.append(HistoryItem(id="d", kind="dtmf", text="5"))
    items.append(
        HistoryItem(id="f", kind="function_call", name="getNextResponseFromSupervisor", arguments="{}")
    )
    messages = build_transcript(items, token_budget=40)  # ≈ 160 characters
    assert sum(len(m.content) for m in messages) <= 160
    assert messages[-2] == Message("assistant", "Let me check [cut off: the caller interrupted here]")
    assert messages[-1] == Message("user", "[the caller pressed keys: 5]")
    assert messages[0].content.startswith("message number 9")
    assert build_transcript(items, token_budget=10000)[0].content.startswith("message number 0")
    [tail] = build_transcript([items[0]], token_budget=5)
    assert tail.content == "…" + items[0].text[-20:]  # type: ignore[index]


def test_prompt_is_loaded_from_file(library: PolicyLibrary) -> None:
    prompt = load_instructions()
    assert "Northwind Outfitters" in prompt and "lookupPolicyDocument" in prompt and "[policy:" in prompt
