"""Inline mode: every published policy in the supervisor's prompt when they fit under the limit."""

from __future__ import annotations

from collections.abc import Sequence

from callrecord.history import CallHistory
from supervisor.agent import Supervisor, build_supervisor
from supervisor.model import Item, ModelTurn
from supervisor.policies import PolicyLibrary
from supervisor.tools import ToolSpec, default_registry
from tests.support.supervisor import TENT_QUESTION, StartTextModel


class PromptRecorder:
    """A scripted text model that answers once from the prompt and keeps the instructions it got."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.instructions: list[str] = []

    async def complete(
        self, instructions: str, messages: Sequence[Item], tools: Sequence[ToolSpec]
    ) -> ModelTurn:
        self.instructions.append(instructions)
        return ModelTurn(text=self.answer)


def supervisor(model: PromptRecorder, library: PolicyLibrary, history: CallHistory, limit: int) -> Supervisor:
    return Supervisor(
        model, default_registry(library), history, model_name="scripted", api="test", instructions="BASE",
        library=library, inline_max_chars=limit,
    )


async def test_policies_are_inlined_when_they_fit_and_cited_ones_are_recorded(
    library: PolicyLibrary, history: CallHistory
) -> None:
    size = len(library.inline_text())
    model = PromptRecorder("Sixty days for used tents. [policy:returns@3] [policy:nope@1]")
    decision = await supervisor(model, library, history, size).decide("call-in-1", TENT_QUESTION)
    prompt = model.instructions[0]
    assert prompt.startswith("BASE\n\n# Policy documents (all published)")
    assert "## Policy returns@3: Returns and Refunds" in prompt and "## Policy warranty@4" in prompt
    assert decision.policy_labels() == ["returns@3"]  # cited and inlined; the unknown one is not
    assert decision.text == "Sixty days for used tents."


async def test_too_large_or_off_means_the_prompt_stays_as_it_is(
    library: PolicyLibrary, history: CallHistory
) -> None:
    size = len(library.inline_text())
    for limit in (size - 1, 0):
        model = PromptRecorder("Sixty days. [policy:returns@3]")
        decision = await supervisor(model, library, history, limit).decide("call-in-2", TENT_QUESTION)
        assert model.instructions == ["BASE"] and decision.policy_labels() == []


async def test_inline_follows_the_library_after_a_swap(
    library: PolicyLibrary, history: CallHistory, start_text_model: StartTextModel
) -> None:
    lib = PolicyLibrary(library.documents)
    sim = await start_text_model()
    sup = build_supervisor(
        history, api_key="sk-test", model="m", base_url=sim.base_url, library=lib, inline_max_chars=100_000
    )
    await sup.decide("call-in-3", TENT_QUESTION)
    assert "## Policy returns@3" in sim.state.text_requests[0]["instructions"]
    lib.replace([d for d in library.documents if d.id != "returns"])
    await sup.decide("call-in-4", TENT_QUESTION)
    latest = sim.state.text_requests[-1]["instructions"]
    assert "## Policy returns@3" not in latest and "## Policy shipping@2" in latest
    await sup.aclose()
