"""What the caller has actually heard: audio sent, marks acknowledged, truncation point.

Assistant audio sent to the caller is followed, now and then, by a named mark. The caller side
(Twilio, or our own WebSocket client) echoes a mark once the audio before it has *played*.

Marks go at a coarse grain (:data:`MARK_INTERVAL_MS`): one after the first chunk of every
item, to anchor its playback on the caller's clock, then one whenever that much audio has been
sent since the last, and one for the tail when the reply ends (:meth:`PlaybackTracker.flush`).
Between two acknowledged marks the heard position is interpolated from the *mark clock*: the
last acknowledged position plus the time since its echo came back, as audio plays in real
time, clamped to the audio actually sent — never wall-clock time since the first delta. With a
mark on every 20 ms chunk (interval 0) the heard position is the last acknowledged one.

The mark clock only holds while the caller has audio to play. When audio comes slower than it
plays (the model paused mid-reply, a slow link), the caller's buffer runs dry and its playback
waits for the next chunk: a chunk sent once the mark clock says everything before it has played
(by more than :data:`UNDERRUN_SLACK_MS`) starts the item's clock again, as its first chunk did —
the position is held at what was sent before it, and the chunk gets a mark whose echo anchors
the clock anew. Without it, the time the caller spent waiting counted as heard.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

MARK_INTERVAL_MS: Final = 100.0
MAX_PENDING_MARKS: Final = 4096  # a caller that never echoes: the oldest are forgotten
UNDERRUN_SLACK_MS: Final = 20.0  # how long the mark clock may run past the audio sent (one chunk)


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
    heard_ms: float = 0.0  # the last acknowledged position
    marked_ms: float = 0.0  # the position of the last mark sent
    acked_at: float | None = None  # monotonic time its last mark was acknowledged
    # (audio position when the transcript delta arrived, delta text)
    words: list[tuple[float, str]] = field(default_factory=list)


# a mark's name → the (item, position) pairs its echo proves played
_Pending = OrderedDict[str, tuple[tuple[str, float], ...]]


class PlaybackTracker:
    def __init__(
        self, bytes_per_ms: float, mark_interval_ms: float = MARK_INTERVAL_MS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.bytes_per_ms = bytes_per_ms
        self.mark_interval_ms = mark_interval_ms
        self._clock = clock
        self._items: OrderedDict[str, _ItemPlayback] = OrderedDict()
        self._pending: _Pending = OrderedDict()
        self._seq = itertools.count(1)
        self._unmarked: str | None = None  # an item with audio sent after its last mark
        self.current_item: str | None = None

    def _item(self, item_id: str) -> _ItemPlayback:
        item = self._items.get(item_id)
        if item is None:
            item = self._items[item_id] = _ItemPlayback()
            while len(self._items) > 64:
                self._items.popitem(last=False)
        return item

    def sent(self, item_id: str, b64_audio: str) -> str | None:
        """Account for a chunk sent to the caller; returns the name of the mark to send after
        it, or None when no mark is due yet."""
        item = self._item(item_id)
        first = item.sent_ms == 0.0 or self._ran_dry(item)
        item.sent_ms += b64_decoded_len(b64_audio) / self.bytes_per_ms
        self.current_item = item_id
        if first or item.sent_ms - item.marked_ms >= self.mark_interval_ms:
            return self._mark(item_id)
        self._unmarked = item_id
        return None

    def _ran_dry(self, item: _ItemPlayback) -> bool:
        """Whether the caller, on the mark clock, played all of the item sent so far a while
        ago; if so its position is held there and its clock stopped until the next echo."""
        if item.acked_at is None:
            return False
        played = item.heard_ms + (self._clock() - item.acked_at) * 1000.0
        if played < item.sent_ms + UNDERRUN_SLACK_MS:
            return False
        item.heard_ms, item.acked_at = item.sent_ms, None
        return True

    def flush(self) -> str | None:
        """A reply ended: the mark for audio sent since the last one, if any."""
        return self._mark(None) if self._unmarked is not None else None

    def _mark(self, item_id: str | None) -> str:
        covered: list[tuple[str, float]] = []
        for marked in dict.fromkeys((self._unmarked, item_id)):  # an earlier item's tail too
            item = self._items.get(marked) if marked is not None else None
            if item is not None and marked is not None:
                item.marked_ms = item.sent_ms
                covered.append((marked, item.sent_ms))
        self._unmarked = None
        name = f"m{next(self._seq)}"
        self._pending[name] = tuple(covered)
        while len(self._pending) > MAX_PENDING_MARKS:
            self._pending.popitem(last=False)
        return name

    def note_transcript(self, item_id: str, delta: str) -> None:
        item = self._item(item_id)
        item.words.append((item.sent_ms, delta))

    def on_mark(self, name: str) -> bool:
        """A mark came back: the audio before it has played. False for unknown/flushed marks."""
        if name not in self._pending:
            return False
        now = self._clock()
        # Marks play in order: this one and every earlier one are done.
        while self._pending:
            key, covered = self._pending.popitem(last=False)
            for item_id, pos in covered:
                item = self._items.get(item_id)
                if item is not None and pos >= item.heard_ms:
                    item.heard_ms, item.acked_at = pos, now
            if key == name:
                break
        return True

    def is_playing(self) -> bool:
        """True while audio sent to the caller has not all been acknowledged as played."""
        return bool(self._pending) or self._unmarked is not None

    def heard_ms(self, item_id: str) -> int:
        """Where the caller is in the item now: the last acknowledged position, moved on by
        the time since its echo while more was sent (see the module docstring)."""
        item = self._items.get(item_id)
        if item is None:
            return 0
        heard = item.heard_ms
        if item.acked_at is not None and item.sent_ms > heard and self.is_playing():
            heard += (self._clock() - item.acked_at) * 1000.0
        return round(min(heard, item.sent_ms))

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
        """The caller's buffer was cleared: marks still outstanding will never count as heard,
        and each item's heard position stays where it was when the buffer was cleared."""
        for item_id, item in self._items.items():
            item.heard_ms = float(self.heard_ms(item_id))
            item.acked_at = None
        self._pending.clear()
        self._unmarked = None
        self.current_item = None
