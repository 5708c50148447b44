"""The supervisor: reads the call, consults policies and tools, decides what the responder says.

``Supervisor.decide(call_id, context)`` runs one bounded tool loop against the text model:

1. read the call's history from Redis and turn it into a transcript (user and assistant
   messages, earlier decisions as short notes), trimmed to a token budget, newest kept;
2. add the responder's ``relevantContextFromLastUserMessage``;
3. at most ``max_rounds`` model rounds under ONE overall deadline; the tool calls of a
   round run in parallel;
4. the final text is made speech-ready (markup and citation tokens stripped).

Whatever happens, a :class:`~callrecord.decisions.Decision` is produced, stored on the call
and logged. On timeout, model error or an exhausted loop its text is a spoken fallback that
apologises and offers a human, so the call goes on.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Sequence
from pathlib import Path

import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from structlog.typing import FilteringBoundLogger

from callrecord.decisions import Decision, Outcome, PolicyRef, ToolCallRecord, Trigger
from callrecord.history import CallHistory, HistoryItem
from supervisor.call_control import as_action, call_control_tools, offered
from supervisor.model import (
    Api,
    Item,
    Message,
    ModelClient,
    ModelError,
    OpenAIModelClient,
    ToolCall,
    ToolOutput,
)
from supervisor.otel import Spans, span_factory
from supervisor.policies import PolicyLibrary
from supervisor.retry import deadline_scope
from supervisor.sanitize import to_speech
from supervisor.tools import DEFAULT_DATA_DIR, ToolRegistry, ToolResult, default_registry, policy_lookup_tool

log = structlog.get_logger("supervisor")

INSTRUCTIONS_PATH = Path(__file__).resolve().parent / "instructions" / "supervisor.md"
DEFAULT_POLICIES_DIR = Path(__file__).resolve().parent.parent / "policies"
CONTEXT_LABEL = "relevantContextFromLastUserMessage"
FALLBACK_TEXT = "I'm sorry, I can't confirm that right now. I can connect you with a colleague who can help."
CHARS_PER_TOKEN = 4


def load_instructions(path: str | Path = INSTRUCTIONS_PATH) -> str:
    return Path(path).read_text(encoding="utf-8").strip()


class Supervisor:
    def __init__(
        self,
        model: ModelClient,
        tools: ToolRegistry,
        history: CallHistory,
        *,
        model_name: str,
        api: str,
        instructions: str,
        max_rounds: int = 4,
        deadline_s: float = 10.0,
        history_tokens: int = 4000,
        history_items: int = 200,
        fallback_text: str = FALLBACK_TEXT,
        library: PolicyLibrary | None = None,
        inline_max_chars: int = 0,
    ) -> None:
        if max_rounds < 1:
            raise ValueError("max_rounds must be at least 1")
        self.model = model
        self.tools = tools
        self.history = history
        self.model_name = model_name
        self.api = api
        self.instructions = instructions
        self.max_rounds = max_rounds
        self.deadline_s = deadline_s
        self.history_tokens = history_tokens
        self.history_items = history_items
        self.fallback_text = fallback_text
        self.library = library  # the policy set behind the lookup tool (for inline mode)
        self.inline_max_chars = inline_max_chars
        self.spans: Spans = span_factory(False)  # OpenTelemetry spans: see build_supervisor(otel=…)

    def with_policies(self, library: PolicyLibrary) -> Supervisor:
        """The same supervisor (model client, history, prompt) over another policy set."""
        twin = copy.copy(self)
        twin.library, twin.tools = library, self.tools.replacing(policy_lookup_tool(library))
        return twin

    def _prompt(self) -> tuple[str, dict[str, PolicyRef]]:
        """Instructions, plus every published policy when inline mode is on and they fit."""
        if self.library is None or self.inline_max_chars <= 0:
            return self.instructions, {}
        text = self.library.inline_text()
        if not text or len(text) > self.inline_max_chars:
            return self.instructions, {}
        refs = {d.label(): PolicyRef(id=d.id, version=d.version) for d in self.library.published()}
        return f"{self.instructions}\n\n# Policy documents (all published)\n\n{text}", refs

    async def aclose(self) -> None:
        """Close the model client's connections (if it has any)."""
        close = getattr(self.model, "aclose", None)
        if close is not None:
            await close()

    async def decide(
        self, call_id: str, context: str, *, user_item_id: str | None = None, trigger: Trigger = "tool_call"
    ) -> Decision:
        """Answer the caller's latest request; never raises for model, tool or deadline trouble."""
        started = time.perf_counter()
        decision = Decision(
            call_id=call_id, user_item_id=user_item_id, context=context, model=self.model_name, api=self.api,
            trigger=trigger,
        )  # fmt: skip
        blog = log.bind(call_id=call_id, decision_id=decision.decision_id)
        deadline = asyncio.timeout(self.deadline_s)
        try:
            # bound for every log line of this run, tools' own included
            with structlog.contextvars.bound_contextvars(call_id=call_id, decision_id=decision.decision_id):
                async with deadline:
                    with deadline_scope(deadline.when()):  # model retries stop short of it
                        await self._run(decision, blog)
        except TimeoutError:
            if not deadline.expired():
                _fail(decision, "error", "TimeoutError raised inside the supervisor")
            else:
                _fail(decision, "timeout", f"deadline of {self.deadline_s:g}s passed")
        except ModelError as exc:
            _fail(decision, "error", str(exc))
        except Exception as exc:  # the call must go on, whatever broke
            blog.exception("supervisor.failed")
            _fail(decision, "error", f"{type(exc).__name__}: {exc}")
        if decision.outcome != "ok" or not decision.text:
            if decision.outcome == "ok":
                _fail(decision, "fallback", "the model gave no speakable answer")
            decision.text = self.fallback_text
        decision.latency_ms = (time.perf_counter() - started) * 1000
        try:
            await self.history.add_decision(call_id, decision)
        except Exception:
            blog.exception("supervisor.decision_not_stored")
        decision.log_event()
        return decision

    # -- the loop -----------------------------------------------------------------------------
    async def _run(self, decision: Decision, blog: FilteringBoundLogger) -> None:
        try:
            items = await self.history.get_items(decision.call_id, limit=self.history_items)
        except (RedisConnectionError, RedisTimeoutError) as exc:  # decide from the context alone
            blog.warning("supervisor.history_unavailable", error=repr(exc))
            items = []
        conversation: list[Item] = [
            *build_transcript(items, self.history_tokens),
            Message("user", f"{CONTEXT_LABEL}: {decision.context}"),
        ]
        specs = [s for s in self.tools.specs() if offered(decision.trigger, s.name)]
        instructions, inlined = self._prompt()
        policies: dict[str, PolicyRef] = {}
        for round_no in range(1, self.max_rounds + 1):
            decision.rounds = round_no
            await _let_calls_through()  # the history read / tool results, then the request
            with self.spans("supervisor.round", round=round_no, decision_id=decision.decision_id):
                turn = await self.model.complete(instructions, conversation, specs)
            decision.usage.add(turn.usage.input_tokens, turn.usage.output_tokens)
            blog.info(
                "supervisor.round",
                round=round_no,
                tool_calls=[c.name for c in turn.tool_calls],
                text_chars=len(turn.text),
                input_tokens=turn.usage.input_tokens,
                output_tokens=turn.usage.output_tokens,
            )
            await _let_calls_through()  # the reply read, then the answer or the tool calls
            if not turn.tool_calls:
                self._finish(decision, turn.text, policies, blog, inlined)
                return
            conversation.append(turn)
            results = await asyncio.gather(*(self._call_tool(c, decision, blog) for c in turn.tool_calls))
            for call, result in zip(turn.tool_calls, results, strict=True):
                conversation.append(ToolOutput(call.id, result.output))
                for ref in result.policies:
                    policies.setdefault(ref.label(), ref)
            decision.policies = list(policies.values())
        _fail(decision, "fallback", f"no answer after {self.max_rounds} model round(s)")

    async def _call_tool(self, call: ToolCall, decision: Decision, blog: FilteringBoundLogger) -> ToolResult:
        with self.spans("supervisor.tool", tool=call.name, decision_id=decision.decision_id):
            result = await self.tools.call(call.name, call.arguments)
        action = as_action(call.name) if offered(decision.trigger, call.name) else None
        if action is not None and result.ok and isinstance(result.arguments, dict):
            decision.action, decision.action_reason = action, str(result.arguments.get("reason", ""))[:300]
        decision.tool_calls.append(
            ToolCallRecord(
                name=call.name,
                arguments=result.arguments,
                result_summary=result.summary(),
                ms=round(result.ms, 2),
                ok=result.ok,
                round=decision.rounds,
            )
        )
        blog.info(
            "supervisor.tool",
            tool=call.name,
            tool_call_id=call.id,
            round=decision.rounds,
            arguments=result.arguments,
            result_summary=result.summary(),
            ok=result.ok,
            ms=round(result.ms, 2),
            policies=[p.label() for p in result.policies],
        )
        return result

    def _finish(
        self,
        decision: Decision,
        raw_text: str,
        policies: dict[str, PolicyRef],
        blog: FilteringBoundLogger,
        inlined: dict[str, PolicyRef] | None = None,
    ) -> None:
        decision.raw_text = raw_text
        decision.text, decision.citations = to_speech(raw_text)
        for label in decision.citations:  # inline mode: a cited inlined policy was used
            if inlined and label in inlined:
                policies.setdefault(label, inlined[label])
        decision.policies = list(policies.values())
        unverified = [c for c in decision.citations if "@" in c and c not in policies]
        if unverified:
            blog.warning("supervisor.citation_unverified", citations=unverified)


async def _let_calls_through() -> None:
    """One turn of the event loop for everything else between two pieces of a decision's CPU
    work (reading the history, building a request, reading a reply): each is a few hundred
    microseconds, and together they held every call's audio frames up to 2-4 ms at a time
    (``benchmarks.load.decide_stretch``)."""
    await asyncio.sleep(0)


MAX_DECISION_ERROR_CHARS = 1000  # what a decision keeps of the error (stored, logged, published)


def _fail(decision: Decision, outcome: Outcome, error: str) -> None:
    decision.outcome = outcome
    decision.error = error[:MAX_DECISION_ERROR_CHARS]


# -- transcript -------------------------------------------------------------------------------


def build_transcript(items: Sequence[HistoryItem], token_budget: int) -> list[Message]:
    """The call as model messages, newest kept within ``token_budget`` (≈ chars / 4)."""
    messages = [m for m in (_as_message(i) for i in items) if m is not None]
    budget = max(token_budget, 0) * CHARS_PER_TOKEN
    kept: list[Message] = []
    for message in reversed(messages):
        size = len(message.content)
        if size > budget:
            if not kept and budget > 0:  # the newest message alone is too long: keep its end
                kept.append(Message(message.role, "…" + message.content[-budget:]))
            break
        kept.append(message)
        budget -= size
    kept.reverse()
    return kept


def _as_message(item: HistoryItem) -> Message | None:
    text = (item.text or "").strip()
    if item.kind == "message" and item.role in ("user", "assistant") and text:
        if item.status == "interrupted":
            text += " [cut off: the caller interrupted here]"
        return Message(item.role, text)
    if item.kind == "dtmf" and text:
        return Message("user", f"[the caller pressed keys: {text}]")
    if item.kind == "decision" and text:
        outcome = item.meta.get("outcome", "ok")
        cited = ", ".join(item.meta.get("policies") or []) or "none"
        return Message(
            "system", f"[earlier supervisor decision, outcome {outcome}, policies {cited}]: {text}"
        )
    return None


# -- factory ----------------------------------------------------------------------------------


def build_supervisor(
    history: CallHistory,
    *,
    api_key: str,
    model: str,
    base_url: str | None = None,
    api: Api = "responses",
    policies_dir: str | Path = DEFAULT_POLICIES_DIR,
    data_dir: str | Path | None = None,
    instructions_path: str | Path = INSTRUCTIONS_PATH,
    max_rounds: int = 4,
    deadline_s: float = 10.0,
    history_tokens: int = 4000,
    max_retries: int = 3,
    library: PolicyLibrary | None = None,
    tools: ToolRegistry | None = None,
    inline_max_chars: int = 0,
    otel: bool = False,
) -> Supervisor:
    """A Supervisor wired from plain settings: SDK client, policy library, tools, prompt."""
    client = OpenAIModelClient.create(
        model=model,
        api_key=api_key,
        base_url=base_url,
        api=api,
        timeout_s=deadline_s,
        max_retries=max_retries,
    )
    if tools is None:
        library = library if library is not None else PolicyLibrary.from_dir(policies_dir)
        data = Path(data_dir) if data_dir is not None else Path(policies_dir) / "data"
        tools = default_registry(library, data_dir=data if data.is_dir() else DEFAULT_DATA_DIR)
        for tool in call_control_tools():  # offered on delegated turns only (GPT-Live)
            tools.register(tool)
    supervisor = Supervisor(
        client,
        tools,
        history,
        model_name=model,
        api=api,
        instructions=load_instructions(instructions_path),
        max_rounds=max_rounds,
        deadline_s=deadline_s,
        history_tokens=history_tokens,
        library=library,
        inline_max_chars=inline_max_chars,
    )
    supervisor.spans = span_factory(otel)
    return supervisor
