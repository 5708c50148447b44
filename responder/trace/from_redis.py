"""Build a Trace from what Redis holds for a call (meta, items in conversation order, decisions)."""

from __future__ import annotations

from collections.abc import Callable

from callrecord.decisions import Decision
from callrecord.history import CallHistory, HistoryItem
from responder.trace.model import (
    Trace,
    TraceDecision,
    TraceEntry,
    TraceSummary,
    TraceTool,
    mark_fillers,
    round_decision,
    valid_call_id,
    worst_outcome,
)


def _message(item: HistoryItem) -> TraceEntry | None:
    if item.role not in ("user", "assistant"):
        return None
    return TraceEntry(
        kind=item.role, item_id=item.id, text=item.text, status=item.status, at=item.created_at,
        audio_end_ms=item.audio_end_ms, full_text=item.full_text,
    )  # fmt: skip


def _function_call(item: HistoryItem) -> TraceEntry:
    return TraceEntry(
        kind="tool_call", item_id=item.id, name=item.name, tool_call_id=item.tool_call_id,
        arguments=item.arguments, status=item.status, at=item.created_at,
    )  # fmt: skip


def _function_output(item: HistoryItem) -> TraceEntry:
    return TraceEntry(
        kind="tool_output", item_id=item.id, tool_call_id=item.tool_call_id, text=item.output,
        at=item.created_at,
    )  # fmt: skip


def _decision(item: HistoryItem) -> TraceEntry:
    return TraceEntry(
        kind="decision", item_id=item.id, text=item.text, outcome=item.meta.get("outcome"), at=item.created_at
    )


def _side(kind: str) -> Callable[[HistoryItem], TraceEntry]:
    def build(item: HistoryItem) -> TraceEntry:
        return TraceEntry(kind=kind, item_id=item.id, text=item.text, name=item.name, at=item.created_at)  # type: ignore[arg-type]

    return build


def _action(item: HistoryItem) -> TraceEntry:
    meta = item.meta
    return TraceEntry(
        kind="action", item_id=item.id, text=item.text, name=item.name, outcome=meta.get("outcome"),
        reason=meta.get("reason"), target=meta.get("target"), error=meta.get("error"), at=item.created_at,
    )  # fmt: skip


_BUILDERS: dict[str, Callable[[HistoryItem], TraceEntry | None]] = {
    "message": _message,
    "function_call": _function_call,
    "function_call_output": _function_output,
    "decision": _decision,
    "hold_line": _side("hold_line"),
    "dtmf": _side("dtmf"),
    "action": _action,
}


def decision_from_record(d: Decision) -> TraceDecision:
    return round_decision(
        TraceDecision(
            decision_id=d.decision_id,
            user_item_id=d.user_item_id,
            context=d.context,
            model=d.model,
            api=d.api,
            rounds=d.rounds,
            outcome=d.outcome,
            error=d.error,
            policies=d.policy_labels(),
            tool_calls=[TraceTool.model_validate(t.model_dump()) for t in d.tool_calls],
            text=d.text,
            latency_ms=d.latency_ms,
            input_tokens=d.usage.input_tokens,
            output_tokens=d.usage.output_tokens,
        )
    )


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


async def trace_from_redis(history: CallHistory, call_id: str) -> Trace | None:
    """The call's trace, or None when Redis knows nothing about it."""
    if not valid_call_id(call_id):
        raise ValueError("invalid call id")
    meta = await history.get_meta(call_id)
    items = await history.get_items(call_id)
    decisions = await history.get_decisions(call_id)
    if not meta and not items:
        return None
    entries = [e for e in (_BUILDERS.get(i.kind, lambda _i: None)(i) for i in items) if e is not None]
    return Trace(
        call_id=call_id,
        source="redis",
        transport=meta.get("transport"),
        engine=meta.get("engine"),
        status=meta.get("status"),
        started_at=_float(meta.get("started_at")),
        ended_at=_float(meta.get("ended_at")),
        duration_s=_float(meta.get("duration_s")),
        entries=mark_fillers(entries),
        decisions=[decision_from_record(d) for d in decisions],
    )


async def recent_traces(history: CallHistory, limit: int = 100) -> list[TraceSummary]:
    """Summaries of the most recent calls, newest first (meta + decisions, pipelined)."""
    ids = [i for i in await history.recent_calls(limit) if valid_call_id(i)]
    async with history.redis.pipeline(transaction=False) as pipe:
        for call_id in ids:
            pipe.hgetall(history.key(call_id, "meta"))
            pipe.lrange(history.key(call_id, "decisions"), 0, -1)
        raw = await pipe.execute()
    out: list[TraceSummary] = []
    for n, call_id in enumerate(ids):
        meta = {_s(k): _s(v) for k, v in raw[2 * n].items()}
        if not meta:
            continue  # expired
        decisions = [Decision.model_validate_json(r) for r in raw[2 * n + 1]]
        labels: dict[str, None] = {}
        for d in decisions:
            labels.update(dict.fromkeys(d.policy_labels()))
        out.append(
            TraceSummary(
                call_id=call_id,
                transport=meta.get("transport"),
                engine=meta.get("engine"),
                status=meta.get("status"),
                started_at=_float(meta.get("started_at")),
                duration_s=_float(meta.get("duration_s")),
                outcome=worst_outcome([d.outcome for d in decisions]),
                decisions=len(decisions),
                policies=list(labels),
            )
        )
    return out


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
