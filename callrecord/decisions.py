"""Decision records: one per supervisor run, stored on the call and logged as one event."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any, Literal

import structlog
from pydantic import BaseModel, Field

Outcome = Literal["ok", "timeout", "error", "fallback"]
# What asked for the decision: the Realtime supervisor tool, a GPT-Live delegation, or the
# service itself for a caller turn GPT-Live transcribed but never delegated.
Trigger = Literal["tool_call", "delegation", "recovered"]
# call control the supervisor asked for (GPT-Live: a delegated turn; supervisor/call_control.py)
CallAction = Literal["escalate_to_human", "end_call"]
OUTCOME_RANK: dict[str, int] = {"ok": 0, "fallback": 1, "timeout": 2, "error": 3}

log = structlog.get_logger("supervisor")


class ToolCallRecord(BaseModel):
    name: str
    arguments: dict[str, Any] | str
    result_summary: str
    ms: float
    ok: bool = True
    round: int = 0


class PolicyRef(BaseModel):
    id: str
    version: int
    section: str | None = None

    def label(self) -> str:
        return f"{self.id}@{self.version}"


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, input_tokens: int | None, output_tokens: int | None) -> None:
        self.input_tokens += input_tokens or 0
        self.output_tokens += output_tokens or 0


class Decision(BaseModel):
    call_id: str
    decision_id: str = Field(default_factory=lambda: "dec_" + uuid.uuid4().hex[:16])
    user_item_id: str | None = None
    trigger: Trigger = "tool_call"
    context: str = ""
    model: str = ""
    api: str = ""
    rounds: int = 0
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    policies: list[PolicyRef] = Field(default_factory=list)
    text: str = ""
    raw_text: str = ""
    citations: list[str] = Field(default_factory=list)
    outcome: Outcome = "ok"
    error: str | None = None
    action: CallAction | None = None
    action_reason: str = ""
    latency_ms: float = 0.0
    usage: Usage = Field(default_factory=Usage)
    created_at: float = Field(default_factory=time.time)

    def policy_labels(self) -> list[str]:
        return [p.label() for p in self.policies]

    def log_event(self) -> None:
        """Emit the decision as one structured log event (stable name: supervisor.decision)."""
        log.info(
            "supervisor.decision",
            call_id=self.call_id,
            decision_id=self.decision_id,
            user_item_id=self.user_item_id,
            trigger=self.trigger,
            model=self.model,
            api=self.api,
            rounds=self.rounds,
            outcome=self.outcome,
            error=self.error,
            policies=self.policy_labels(),
            tool_calls=[t.model_dump() for t in self.tool_calls],
            text=self.text,
            context=self.context,
            citations=self.citations,
            latency_ms=round(self.latency_ms, 1),
            input_tokens=self.usage.input_tokens,
            output_tokens=self.usage.output_tokens,
        )


def worst_outcome(outcomes: Iterable[str]) -> str:
    """The worst supervisor outcome of a call (its metric and trace outcome); ``ok`` when
    there was none. An unknown outcome counts as an error."""
    return max(outcomes, key=lambda o: OUTCOME_RANK.get(o, 3), default="ok")
