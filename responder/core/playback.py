"""What the caller has actually heard: audio sent, marks acknowledged, truncation point.

Every chunk of assistant audio sent to the caller is followed by a named mark. The caller side
(Twilio, or our own WebSocket client) echoes a mark once the audio before it has *played*.
The heard position of an item is the position of its last acknowledged mark, clamped to the
audio actually sent — never wall-clock time since the first delta.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from dataclasses import dataclass, field


def b64_decoded_len(b64: str) -> int:
    """Length in bytes of base64 data, without decoding it."""
    n = len(b64)
    if n == 0:
        return 0
    pad = 2 if b64.endswith("==") else 1 if b64.endswith("=") else 0
    return n * 3 // 4 - pad


@dataclass
class _ItemPlayback:
    sent_ms: float = 0.0
    heard_ms: float = 0.0
    # (audio position when the transcript delta arrived, delta text)
    words: list[tuple[float, str]] = field(default_factory=list)


class PlaybackTracker:
    def __init__(self, bytes_per_ms: float) -> None:
        self.bytes_per_ms = bytes_per_ms
        self._items: OrderedDict[str, _ItemPlayback] = OrderedDict()
        self._pending: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._seq = itertools.count(1)
        self.current_item: str | None = None

    def _item(self, item_id: str) -> _ItemPlayback:
        item = self._items.get(item_id)
        if item is None:
            item = self._items[item_id] = _ItemPlayback()
            while len(self._items) > 64:
                self._items.popitem(last=False)
        return item

    def sent(self, item_id: str, b64_audio: str) -> str:
        """Account for a chunk sent to the caller; returns the name of the mark to send after it."""
        item = self._item(item_id)
        item.sent_ms += b64_decoded_len(b64_audio) / self.bytes_per_ms
        self.current_item = item_id
        name = f"m{next(self._seq)}"
        self._pending[name] = (item_id, item.sent_ms)
        return name

    def note_transcript(self, item_id: str, delta: str) -> None:
        item = self._item(item_id)
        item.words.append((item.sent_ms, delta))

    def on_mark(self, name: str) -> bool:
        """A mark came back: the audio before it has played. False for unknown/flushed marks."""
        if name not in self._pending:
            return False
        # Marks play in order: this one and every earlier one are done.
        while self._pending:
            key, (item_id, pos) = self._pending.popitem(last=False)
            item = self._items.get(item_id)
            if item is not None:
                item.heard_ms = max(item.heard_ms, pos)
            if key == name:
                break
        return True

    def is_playing(self) -> bool:
        """True while audio sent to the caller has not all been acknowledged as played."""
        return bool(self._pending)

    def heard_ms(self, item_id: str) -> int:
        item = self._items.get(item_id)
        if item is None:
            return 0
        return int(min(item.heard_ms, item.sent_ms))

    def sent_ms(self, item_id: str) -> int:
        item = self._items.get(item_id)
        return 0 if item is None else int(item.sent_ms)

    def heard_text(self, item_id: str) -> str:
        """The part of the item's transcript whose audio the caller heard (approximate)."""
        item = self._items.get(item_id)
        if item is None:
            return ""
        heard = self.heard_ms(item_id)
        return "".join(delta for pos, delta in item.words if pos <= heard).strip()

    def full_text(self, item_id: str) -> str:
        """Everything the model generated for the item so far, heard or not."""
        item = self._items.get(item_id)
        return "" if item is None else "".join(delta for _, delta in item.words).strip()

    def clear(self) -> None:
        """The caller's buffer was cleared: marks still outstanding will never count as heard."""
        self._pending.clear()
        self.current_item = None
