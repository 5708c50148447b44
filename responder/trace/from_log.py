"""Rebuild a call's Trace from JSON log lines alone (``RESPONDER_LOG_FILE`` / ``--log-file``).

The recorder logs every item it stores with the place it was stored at (``call.item_added``,
``where``: the previous item id, ``^`` for the head, empty for "append"); transcripts,
barge-ins, tool arguments, hold lines, key presses, actions and decisions follow as their
own events. Replaying them with the same placement rule as Redis
(:mod:`callrecord.placement`) gives the same conversation order. Texts are as logged:
redacted when ``RESPONDER_LOG_REDACT_PII`` is on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from callrecord.placement import ConversationOrder
from responder.trace.model import Trace, TraceDecision, TraceEntry, TraceTool, mark_fillers, round_decision

_KINDS = {"function_call": "tool_call", "function_call_output": "tool_output"}


class _Builder:
    """Applies log events of one call, in log order."""

    def __init__(self, call_id: str) -> None:
        self.trace = Trace(call_id=call_id, source="log")
        self.order = ConversationOrder()
        self.server_truncated: set[str] = set()
        self.items: dict[str, TraceEntry] = {}
        self.handlers: dict[str, Callable[[dict[str, Any], float | None], None]] = {
            "call.started": self._started,
            "call.item_added": self._item_added,
            "call.user_turn": self._user_turn,
            "call.user_transcript_failed": self._user_failed,
            "call.assistant_turn": self._assistant_turn,
            "call.barge_in": self._barge_in,
            "call.tool_call": self._tool_call,
            "call.hold_line": self._hold_line,
            "call.dtmf": self._dtmf,
            "call.action": self._action,
            "supervisor.decision": self._decision,
            "call.ended": self._ended,
        }

    def apply(self, event: dict[str, Any]) -> None:
        handler = self.handlers.get(str(event.get("event")))
        if handler is not None:
            handler(event, _timestamp(event.get("timestamp")))

    def result(self) -> Trace:
        self.trace.entries = mark_fillers([self.items[i] for i in self.order.ids])
        return self.trace

    # -- placement: the rule of CallHistory.add_item -------------------------------------
    def _place(self, entry: TraceEntry, where: str) -> None:
        self.items[entry.item_id] = entry
        self.order.place(entry.item_id, where)

    def _update(self, item_id: Any, **fields: Any) -> None:
        entry = self.items.get(str(item_id))
        if entry is not None:
            self.items[entry.item_id] = entry.model_copy(update=fields)

    # -- events ----------------------------------------------------------------------------
    def _started(self, e: dict[str, Any], at: float | None) -> None:
        self.trace.transport = e.get("transport")
        self.trace.engine = e.get("engine")
        self.trace.status = "active"
        self.trace.started_at = at

    def _ended(self, e: dict[str, Any], at: float | None) -> None:
        self.trace.status = "ended"
        self.trace.ended_at = at
        self.trace.duration_s = e.get("duration_s")

    def _item_added(self, e: dict[str, Any], at: float | None) -> None:
        kind = str(e.get("kind"))
        entry_kind = e.get("role") if kind == "message" else _KINDS.get(kind)
        if entry_kind is None:
            return
        entry = TraceEntry(
            kind=entry_kind, item_id=str(e.get("item_id")), status=e.get("status"), name=e.get("name"),
            tool_call_id=e.get("tool_call_id"), arguments=e.get("arguments"), at=at,
            text=e.get("output") if kind == "function_call_output" else e.get("text"),
        )  # fmt: skip
        if entry.kind == "tool_output":
            entry.status = None
        self._place(entry, str(e.get("where") or ""))

    def _user_turn(self, e: dict[str, Any], at: float | None) -> None:
        self._update(e.get("item_id"), text=e.get("text"), status="completed")

    def _user_failed(self, e: dict[str, Any], at: float | None) -> None:
        self._update(e.get("item_id"), status="failed")

    def _assistant_turn(self, e: dict[str, Any], at: float | None) -> None:
        if str(e.get("item_id")) in self.server_truncated:  # the recorder keeps the whole text
            self._update(e.get("item_id"), text=e.get("text"), full_text=e.get("text"))
        elif e.get("interrupted"):
            self._update(e.get("item_id"), full_text=e.get("text"))
        else:
            self._update(e.get("item_id"), text=e.get("text"), status="completed")

    def _barge_in(self, e: dict[str, Any], at: float | None) -> None:
        entry = self.items.get(str(e.get("item_id")))
        if entry is None or entry.kind != "assistant":
            return  # a hold line: not in the conversation, nothing recorded
        if e.get("by") == "server":  # SIP/WebRTC: the server cut the audio; what was heard is unknown
            self.server_truncated.add(entry.item_id)
            self._update(entry.item_id, status="interrupted", audio_end_ms=e.get("audio_end_ms"))
            return
        self._update(
            entry.item_id, text=e.get("heard_text"), full_text=e.get("full_text") or None,
            status="interrupted", audio_end_ms=e.get("audio_end_ms"),
        )  # fmt: skip

    def _tool_call(self, e: dict[str, Any], at: float | None) -> None:
        for entry in self.items.values():
            if entry.kind == "tool_call" and entry.tool_call_id == e.get("tool_call_id"):
                self._update(entry.item_id, arguments=e.get("arguments"), status="completed")

    def _hold_line(self, e: dict[str, Any], at: float | None) -> None:
        entry = TraceEntry(kind="hold_line", item_id=str(e.get("item_id")), text=e.get("text"), at=at)
        self._place(entry, "")

    def _dtmf(self, e: dict[str, Any], at: float | None) -> None:
        item_id = str(e.get("item_id") or f"dtmf@{at}")
        self._place(TraceEntry(kind="dtmf", item_id=item_id, text=e.get("digit"), at=at), "")

    def _action(self, e: dict[str, Any], at: float | None) -> None:
        entry = TraceEntry(
            kind="action", item_id=str(e.get("action_id")), name=e.get("action"), text=e.get("line"),
            outcome=e.get("outcome"), reason=e.get("reason"), target=e.get("target"), error=e.get("error"),
            at=at,
        )  # fmt: skip
        self._place(entry, "")

    def _decision(self, e: dict[str, Any], at: float | None) -> None:
        decision = round_decision(
            TraceDecision(
                decision_id=str(e.get("decision_id")),
                user_item_id=e.get("user_item_id"),
                context=e.get("context") or "",
                model=e.get("model") or "",
                api=e.get("api") or "",
                rounds=e.get("rounds") or 0,
                outcome=e.get("outcome") or "ok",
                error=e.get("error"),
                policies=list(e.get("policies") or []),
                text=e.get("text") or "",
                tool_calls=[TraceTool.model_validate(t) for t in e.get("tool_calls") or []],
                latency_ms=e.get("latency_ms") or 0.0,
                input_tokens=e.get("input_tokens") or 0,
                output_tokens=e.get("output_tokens") or 0,
            )
        )
        self.trace.decisions.append(decision)
        entry = TraceEntry(
            kind="decision", item_id=decision.decision_id, text=decision.text, outcome=decision.outcome, at=at
        )
        self._place(entry, "")


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def parse_lines(lines: Iterable[str]) -> Iterable[dict[str, Any]]:
    """JSON objects from log lines; anything else (console lines, partial writes) is skipped."""
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            yield event


def trace_from_log(lines: Iterable[str], call_id: str) -> Trace | None:
    """The call's trace rebuilt from log lines, or None when the log never mentions the call."""
    builder = _Builder(call_id)
    seen = False
    for event in parse_lines(lines):
        if event.get("call_id") != call_id:
            continue
        seen = True
        builder.apply(event)
    return builder.result() if seen else None
