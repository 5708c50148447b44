"""Twilio's outbound playback buffer, as the simulated caller models it (audio time, in ms).

Media from the service is queued; a ``mark`` is queued at the buffer's current end and is
echoed once playback passes it; ``clear`` drops the unplayed audio and releases every pending
mark at once — which is what Twilio does, and why a service must count only echoed marks as
"heard".
"""

from __future__ import annotations

from collections import deque


class PlaybackBuffer:
    def __init__(self) -> None:
        self.played_ms = 0.0  # total audio played to the caller
        self.end_ms = 0.0  # position (on the played timeline) where queued audio ends
        self.received_ms = 0.0  # total audio received, played or not
        self._marks: deque[tuple[float, str]] = deque()

    @property
    def playing(self) -> bool:
        return self.end_ms > self.played_ms

    @property
    def pending_marks(self) -> int:
        return len(self._marks)

    def add_media(self, ms: float) -> None:
        self.end_ms += ms
        self.received_ms += ms

    def add_mark(self, name: str) -> None:
        self._marks.append((self.end_ms, name))

    def advance(self, ms: float) -> list[str]:
        """Play up to ``ms`` of audio; the marks passed, in order."""
        self.played_ms += max(0.0, min(ms, self.end_ms - self.played_ms))
        passed: list[str] = []
        while self._marks and self._marks[0][0] <= self.played_ms:
            passed.append(self._marks.popleft()[1])
        return passed

    def clear(self) -> list[str]:
        """Drop unplayed audio; every pending mark is released (echoed) immediately."""
        self.end_ms = self.played_ms
        released = [name for _, name in self._marks]
        self._marks.clear()
        return released
