"""The Trace of one call: what was said, in conversation order, and every supervisor decision.

Built either from Redis (:mod:`responder.trace.from_redis`) or from JSON log lines alone
(:mod:`responder.trace.from_log`); both produce the same :class:`Trace` for the same call,
apart from wall-clock fields (``at``, ``started_at``, ``ended_at``) and the ``source``.
"""

from __future__ import annotations

import itertools
import re
from typing import Any, Literal

from pydantic import BaseModel, Field

from callrecord.decisions import ToolCallRecord, worst_outcome

EntryKind = Literal[
    "user", "assistant", "filler", "tool_call", "tool_output", "decision", "hold_line", "dtmf", "action"
]
CALL_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")  # no braces, globs or spaces: safe in a Redis key
_CLOCK_FIELDS = {"at", "started_at", "ended_at", "source"}


def valid_call_id(call_id: str) -> bool:
    return bool(CALL_ID_RE.fullmatch(call_id))


TraceTool = ToolCallRecord  # a trace shows a decision's tool calls exactly as recorded


class TraceDecision(BaseModel):
    decision_id: str
    user_item_id: str | None = None
    context: str = ""
    model: str = ""
    api: str = ""
    rounds: int = 0
    outcome: str = "ok"
    error: str | None = None
    policies: list[str] = Field(default_factory=list)
    tool_calls: list[TraceTool] = Field(default_factory=list)
    text: str = ""
    latency_ms: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0


class TraceEntry(BaseModel):
    kind: EntryKind
    item_id: str
    text: str | None = None
    status: str | None = None
    audio_end_ms: int | None = None
    full_text: str | None = Field(default=None, description="what was generated, when the caller cut it off")
    name: str | None = None
    tool_call_id: str | None = None
    arguments: str | None = None
    outcome: str | None = None
    reason: str | None = Field(default=None, description="why a call action was asked for")
    target: str | None = Field(default=None, description="where a transfer went")
    error: str | None = Field(default=None, description="why a call action failed")
    at: float | None = None

    @property
    def interrupted(self) -> bool:
        return self.status == "interrupted"


class Trace(BaseModel):
    call_id: str
    source: Literal["redis", "log"]
    transport: str | None = None
    engine: str | None = None  # realtime | live (calls recorded before engines: None)
    status: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    duration_s: float | None = None
    entries: list[TraceEntry] = Field(default_factory=list)
    decisions: list[TraceDecision] = Field(default_factory=list)

    @property
    def outcome(self) -> str:
        return worst_outcome([d.outcome for d in self.decisions])

    @property
    def policies(self) -> list[str]:
        seen: dict[str, None] = {}
        for d in self.decisions:
            seen.update(dict.fromkeys(d.policies))
        return list(seen)

    def decision(self, decision_id: str) -> TraceDecision | None:
        return next((d for d in self.decisions if d.decision_id == decision_id), None)

    def comparable(self) -> dict[str, Any]:
        """The trace without wall-clock fields: equal for Redis and log sources of one call."""
        data = self.model_dump(mode="json")
        for key in _CLOCK_FIELDS:
            data.pop(key, None)
        for entry in data["entries"]:
            entry.pop("at", None)
        return data

    def as_json(self) -> dict[str, Any]:
        return {**self.model_dump(mode="json"), "outcome": self.outcome, "policies": self.policies}


class TraceSummary(BaseModel):
    """One row of the recent-calls list."""

    call_id: str
    transport: str | None = None
    engine: str | None = None
    status: str | None = None
    started_at: float | None = None
    duration_s: float | None = None
    outcome: str = "ok"
    decisions: int = 0
    policies: list[str] = Field(default_factory=list)


def mark_fillers(entries: list[TraceEntry]) -> list[TraceEntry]:
    """An assistant line right before a responder tool call is the filler said while it works."""
    for entry, nxt in itertools.pairwise(entries):
        if entry.kind == "assistant" and nxt.kind == "tool_call":
            entry.kind = "filler"
    return entries


def round_decision(decision: TraceDecision) -> TraceDecision:
    """Numbers at the precision the log carries, so both sources agree."""
    decision.latency_ms = round(decision.latency_ms, 1)
    for tool in decision.tool_calls:
        tool.ms = round(tool.ms, 2)
    return decision
