"""A Trace as a readable timeline for a terminal."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from responder.trace.model import Trace, TraceDecision, TraceEntry

_WIDTH = 12


def _clock(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else "?"


def _offset(trace: Trace, entry: TraceEntry) -> str:
    if entry.at is None or trace.started_at is None:
        return " " * 8
    return f"{entry.at - trace.started_at:+7.1f}s"


def _short(value: Any, limit: int = 100) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _line(label: str, text: str) -> str:
    return f"{label:<{_WIDTH}} {text}"


def _user(trace: Trace, e: TraceEntry) -> list[str]:
    status = "" if e.status in (None, "completed") else f"  [{e.status}]"
    return [_line("caller", (e.text or "…") + status)]


def _assistant(trace: Trace, e: TraceEntry) -> list[str]:
    label = "filler" if e.kind == "filler" else "responder"
    if e.interrupted:
        cut = f"[barge-in: caller stopped hearing it at {e.audio_end_ms} ms]"
        lines = [_line(label, f"{e.text or ''}  {cut}")]
        if e.full_text:
            lines.append(_line("", f"(generated: {e.full_text})"))
        return lines
    return [_line(label, e.text or "…")]


def _tool_call(trace: Trace, e: TraceEntry) -> list[str]:
    if trace.engine == "live":  # a GPT-Live hand-over: a delegation (or one the service recovered)
        note = " (recovered: never delegated)" if (e.tool_call_id or "").startswith("recovered_") else ""
        return [_line("delegation", f"{e.tool_call_id}{note}")]
    return [_line("tool call", f"{e.name}({_short(e.arguments or '')})")]


def _tool_output(trace: Trace, e: TraceEntry) -> list[str]:
    return [_line("commentary" if trace.engine == "live" else "tool output", _short(e.text or ""))]


def _decision(trace: Trace, e: TraceEntry) -> list[str]:
    d = trace.decision(e.item_id)
    if d is None:
        return [_line("supervisor", f"{e.item_id} outcome={e.outcome}: {e.text}")]
    return render_decision(d)


def render_decision(d: TraceDecision) -> list[str]:
    policies = ", ".join(d.policies) or "none"
    lines = [
        _line(
            "supervisor",
            f"{d.decision_id}  outcome={d.outcome}  {d.latency_ms:.0f} ms  {d.model} ({d.api})  "
            f"{d.rounds} round(s)  tokens {d.input_tokens}/{d.output_tokens}",
        ),
        _line("", f"asked: {_short(d.context, 160)}"),
    ]
    for n in range(1, d.rounds + 1):
        tools = [t for t in d.tool_calls if t.round == n]
        if not tools:
            last = "final answer" if d.outcome == "ok" else f"no answer ({d.outcome})"
            lines.append(_line("", f"round {n}: {last}" if n == d.rounds else f"round {n}: no tools"))
        for t in tools:
            status = "" if t.ok else " FAILED"
            lines.append(
                _line(
                    "",
                    f"round {n}: {t.name}({_short(t.arguments, 80)}) {t.ms:.1f} ms{status}"
                    f" → {_short(t.result_summary, 100)}",
                )
            )
    lines.append(_line("", f"policies: {policies}"))
    if d.outcome != "ok":
        lines.append(_line("", f"FALLBACK ({d.outcome}): the caller was offered a colleague"))
    if d.error:
        lines.append(_line("", f"error: {d.error}"))
    lines.append(_line("", f"final text: {d.text}"))
    return lines


def _simple(label: str) -> Callable[[Trace, TraceEntry], list[str]]:
    def render(trace: Trace, e: TraceEntry) -> list[str]:
        return [_line(label, e.text or "")]

    return render


def _action(trace: Trace, e: TraceEntry) -> list[str]:
    head = f"{e.name} {e.outcome or '?'}" + (f" → {e.target}" if e.target else "")
    lines = [_line("action", head)]
    if e.reason:
        lines.append(_line("", f"reason: {_short(e.reason, 160)}"))
    if e.text:
        lines.append(_line("", f"said first: {e.text}"))
    if e.error:
        lines.append(_line("", f"error: {e.error}"))
    return lines


_RENDERERS: dict[str, Callable[[Trace, TraceEntry], list[str]]] = {
    "user": _user,
    "assistant": _assistant,
    "filler": _assistant,
    "tool_call": _tool_call,
    "tool_output": _tool_output,
    "decision": _decision,
    "hold_line": _simple("hold line"),
    "dtmf": _simple("key press"),
    "action": _action,
}


def render_text(trace: Trace) -> str:
    head = (
        f"Call {trace.call_id}  ({trace.transport or 'unknown transport'}, {trace.engine or 'realtime'}, "
        f"from {trace.source})\n"
        f"started {_clock(trace.started_at)}  status {trace.status or '?'}  outcome {trace.outcome}  "
        f"{len(trace.decisions)} decision(s)  policies {', '.join(trace.policies) or 'none'}\n"
    )
    lines = [head]
    for entry in trace.entries:
        for n, text in enumerate(_RENDERERS[entry.kind](trace, entry)):
            lines.append(f"{_offset(trace, entry) if n == 0 else ' ' * 8}  {text}")
    if trace.status == "ended":
        lines.append(f"\ncall ended after {trace.duration_s if trace.duration_s is not None else '?'} s")
    return "\n".join(lines)
