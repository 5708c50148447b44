"""Conversation items of the simulated realtime model: ids, shapes, and their order.

Item dicts follow the GA ``ConversationItem`` shapes of the ``openai`` SDK
(``openai.types.realtime.conversation_item``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Literal

ItemStatus = Literal["completed", "incomplete", "in_progress"]


def new_id(prefix: str) -> str:
    """A fresh id in the API's style (``item_…``, ``resp_…``, ``call_…``, ``event_…``)."""
    return f"{prefix}_{secrets.token_hex(10)}"


def user_audio_item(item_id: str, transcript: str | None = None) -> dict[str, Any]:
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "role": "user",
        "status": "completed",
        "content": [{"type": "input_audio", "transcript": transcript}],
    }


def assistant_item(item_id: str, status: ItemStatus, transcript: str | None = None) -> dict[str, Any]:
    content = [] if transcript is None else [{"type": "output_audio", "transcript": transcript}]
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content,
    }


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: ItemStatus
) -> dict[str, Any]:
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "function_call",
        "status": status,
        "name": name,
        "call_id": call_id,
        "arguments": arguments,
    }


@dataclass
class ItemRecord:
    item: dict[str, Any]
    in_conversation: bool = True
    audio_ms: float = 0.0  # assistant audio generated for this item so far


class Conversation:
    """The default conversation: items in conversation order, plus out-of-band items."""

    def __init__(self) -> None:
        self.id = new_id("conv")
        self.order: list[str] = []
        self.records: dict[str, ItemRecord] = {}

    def last_id(self) -> str | None:
        return self.order[-1] if self.order else None

    def get(self, item_id: str) -> ItemRecord | None:
        return self.records.get(item_id)

    def append(self, item: dict[str, Any]) -> str | None:
        """Add ``item`` at the end; returns the id of the item before it."""
        previous = self.last_id()
        self.order.append(item["id"])
        self.records[item["id"]] = ItemRecord(item)
        return previous

    def insert(self, item: dict[str, Any], after: str | None) -> str | None:
        """Insert after ``after`` (``None``: at the end; ``"root"``: first).

        Raises ``KeyError`` for an unknown ``after``; returns the id of the item before it.
        """
        if after is None:
            return self.append(item)
        if after == "root":
            index = 0
            previous = None
        else:
            if after not in self.records or after not in self.order:
                raise KeyError(after)
            index = self.order.index(after) + 1
            previous = after
        self.order.insert(index, item["id"])
        self.records[item["id"]] = ItemRecord(item)
        return previous

    def remember(self, item: dict[str, Any]) -> ItemRecord:
        """Keep an out-of-band item (``conversation: "none"``): known, but not in the order."""
        record = ItemRecord(item, in_conversation=False)
        self.records[item["id"]] = record
        return record

    def update(self, item: dict[str, Any]) -> None:
        record = self.records.get(item["id"])
        if record is not None:
            record.item = item

    def delete(self, item_id: str) -> bool:
        if item_id not in self.records:
            return False
        del self.records[item_id]
        if item_id in self.order:
            self.order.remove(item_id)
        return True
