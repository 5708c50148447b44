"""What stands in for a call's engine while its session is being replaced after a drop.

Nothing the call does meanwhile fails or is lost: a hand-over answered while parked (the
supervisor finished during the gap) is kept for the new session; requests that belong to a
session (replies, truncation, cancels) are dropped, as the new session asks again for what is
due; caller audio is kept up to a limit, newest first, and sent once the new session has its
history (the caller's last words before the line came back are heard, a long monologue into a
dead line is not).
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence

from callrecord.history import HistoryItem
from responder.core.engine import AudioNow, Engine, EngineEvent, EngineName, Line, Purpose, Restored

REPLAY_S = 2.0  # the longest a resume spends replaying caller audio


class ParkedEngine:
    def __init__(self, call_id: str, audio_limit_chars: int, name: EngineName = "realtime") -> None:
        self.name: EngineName = name
        self.requests_replies = True  # what is asked of it is dropped; the new session asks again
        self.call_id = call_id
        self._ids = itertools.count(1)
        self._limit = max(0, audio_limit_chars)
        self.answers: list[tuple[str, str]] = []  # (hand-over id, answer) for the new session
        self.dropped: list[str] = []  # what was asked of the dead session, for the log
        self.audio: deque[str] = deque()
        self._appended = 0  # chunks ever kept: the one at audio[i] is number _appended - len(audio) + i
        self._audio_chars = 0
        self.audio_dropped_chars = 0

    @property
    def audio_chars(self) -> int:
        return self._audio_chars

    def events(self) -> AsyncIterator[EngineEvent]:
        return _no_events()

    async def start(self) -> None:
        return None

    async def append_audio(self, b64_audio: str) -> None:
        self.append_audio_now(b64_audio)

    def append_audio_now(self, b64_audio: str) -> bool:
        self.audio.append(b64_audio)
        self._appended += 1
        self._audio_chars += len(b64_audio)
        while self._audio_chars > self._limit and self.audio:
            dropped = self.audio.popleft()
            self._audio_chars -= len(dropped)
            self.audio_dropped_chars += len(dropped)
        return True

    async def replay_audio(self, engine: Engine, within_s: float = REPLAY_S) -> None:
        """Send the kept audio to ``engine``, oldest first, with the audio that arrives meanwhile
        kept behind it (within the limit, newest first, as before), so the caller's words reach
        the new session in order. Bounded: a session that takes audio slower than the caller
        speaks gets ``within_s`` of it, and what is left is dropped (``audio_dropped_chars``).
        The audio stays kept until it has all gone out, for another attempt if this one fails."""
        deadline = time.monotonic() + within_s
        number = self._appended - len(self.audio)  # the next chunk to send
        while True:
            first = self._appended - len(self.audio)  # the oldest chunk still kept
            number = max(number, first)  # chunks dropped for the limit meanwhile are skipped
            if number >= self._appended:
                break
            if time.monotonic() > deadline:
                left = sum(map(len, itertools.islice(self.audio, number - first, None)))
                self.audio_dropped_chars += left
                self._audio_chars -= left
                break
            await engine.append_audio(self.audio[number - first])
            number += 1
        self.audio.clear()  # sent (or given up): nothing for this session to hold on to

    def watch_barge_in(self, now: Callable[[], None]) -> None:
        return None  # no session: nothing is heard

    def take_audio(self, now: AudioNow) -> None:
        return None  # no session: nothing is said

    def new_request_id(self) -> str:
        return f"evt_{self.call_id[-8:]}_p{next(self._ids)}"

    async def request_reply(self, request_id: str, purpose: Purpose, line: Line | None = None) -> None:
        self.dropped.append(f"reply:{purpose}")

    async def answer_handover(self, handover_id: str, text: str) -> None:
        self.answers.append((handover_id, text))

    async def stop_speaking(self, item_id: str, heard_ms: int) -> None:
        self.dropped.append("stop_speaking")

    async def cancel_reply(self, reply_id: str) -> None:
        self.dropped.append("cancel_reply")

    async def restore(self, items: Sequence[HistoryItem]) -> Restored:
        return Restored()

    async def close(self) -> None:
        return None


async def _no_events() -> AsyncIterator[EngineEvent]:
    return
    yield  # pragma: no cover - makes this an (empty) async generator
