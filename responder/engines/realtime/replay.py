"""A call's recorded history as Realtime client events, to seed a new session after a drop.

When the Realtime socket of a live call drops, the service opens a new session and replays
the conversation so far (:meth:`responder.core.controller.CallController.resume`, through
:meth:`responder.engines.realtime.engine.RealtimeEngine.restore`). This module is the pure part:
:class:`~callrecord.history.HistoryItem` list (conversation order) → ``conversation.item.create``
events whose items follow the ``openai`` SDK's GA types
(``RealtimeConversationItemUserMessage`` / ``...AssistantMessage`` / ``...FunctionCall`` /
``...FunctionCallOutput``):

* user messages → ``input_text`` with the transcript (no transcript: not replayed);
* assistant messages → ``output_text``; an interrupted one carries only what the caller heard
  (``text``; ``full_text`` is what was generated and is never replayed);
* completed function calls with their ``call_id``/``name``/``arguments``, and their outputs;
  an output whose call is not replayed (cut off by the cap, or never completed) is dropped,
  as the server would refuse it;
* hold lines, DTMF, decisions and actions are not replayed: hold lines were out of band, and
  the rest never was in the model's conversation.

Items keep their ids, so that items of the new session placed after them
(``previous_item_id``) land in the right place in the history.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from callrecord.history import HistoryItem
from responder.engines.realtime.protocol import ItemCreate, item_create

REPLAY_LIMIT = 100


def replay_item(item: HistoryItem) -> dict[str, Any] | None:
    """The Realtime conversation item for one history item; None when it is not replayed."""
    if item.kind == "message":
        text = (item.text or "").strip()
        if not text or item.role not in ("user", "assistant"):
            return None
        part = "input_text" if item.role == "user" else "output_text"
        return {
            "id": item.id,
            "type": "message",
            "role": item.role,
            "content": [{"type": part, "text": text}],
        }
    if item.kind == "function_call":
        if not item.tool_call_id or not item.name or item.status != "completed":
            return None  # cut off while its arguments streamed: no answer is coming for it
        arguments = item.arguments or "{}"
        return {"id": item.id, "type": "function_call", "call_id": item.tool_call_id, "name": item.name,
                "arguments": arguments}  # fmt: skip
    if item.kind == "function_call_output":
        if not item.tool_call_id:
            return None
        return {"id": item.id, "type": "function_call_output", "call_id": item.tool_call_id,
                "output": item.output or ""}  # fmt: skip
    return None


def replay_events(items: Sequence[HistoryItem], limit: int = REPLAY_LIMIT) -> list[ItemCreate]:
    """``conversation.item.create`` events for the newest ``limit`` replayable items, in order."""
    replayable = [r for r in (replay_item(i) for i in items) if r is not None]
    kept = replayable[-limit:] if limit > 0 else []
    calls: set[str] = set()
    events: list[ItemCreate] = []
    for item in kept:
        if item["type"] == "function_call":
            calls.add(item["call_id"])
        elif item["type"] == "function_call_output" and item["call_id"] not in calls:
            continue
        events.append(item_create(item))
    return events


def awaits_answer(events: Sequence[ItemCreate]) -> bool:
    """Whether the replayed conversation ends with a caller turn nobody answered yet."""
    if not events:
        return False
    last = events[-1]["item"]
    return last["type"] == "message" and last["role"] == "user"
