"""Twilio's outbound playback buffer, as the simulated caller models it (audio time, in ms).

Media from the service is queued; a ``mark`` is queued at the buffer's current end and is
echoed once playback passes it; ``clear`` drops the unplayed audio and releases every pending
mark at once — which is what Twilio does, and why a service must count only echoed marks as
"heard".

Audio is either voiced or silent (GPT-Live's output is one continuous track with silence
between replies): only voiced audio still to play counts as ``playing``, and
``voiced_played_ms`` counts the voiced audio heard (for ``barge_in_after_ms``).
"""

from __future__ import annotations

from collections import deque


class PlaybackBuffer:
    def __init__(self) -> None:
        self.played_ms = 0.0  # total audio played to the caller
        self.end_ms = 0.0  # position (on the played timeline) where queued audio ends
        self.received_ms = 0.0  # total audio received, played or not
        self.voiced_received_ms = 0.0  # … of it not silence
        self.voiced_played_ms = 0.0  # voiced audio played to the caller
        self.voiced_end_ms = 0.0  # position where the last voiced audio queued ends
        self._marks: deque[tuple[float, str]] = deque()
        self._voiced: deque[list[float]] = deque()  # [start, end] of voiced audio not yet played

    @property
    def playing(self) -> bool:
        """Voiced audio is queued and not yet played (queued silence does not count)."""
        return self.voiced_end_ms > self.played_ms

    @property
    def pending_marks(self) -> int:
        return len(self._marks)

    def add_media(self, ms: float, *, silent: bool = False) -> None:
        start = self.end_ms
        self.end_ms += ms
        self.received_ms += ms
        if silent:
            return
        self.voiced_received_ms += ms
        self.voiced_end_ms = self.end_ms
        if self._voiced and self._voiced[-1][1] == start:
            self._voiced[-1][1] = self.end_ms
        else:
            self._voiced.append([start, self.end_ms])

    def add_mark(self, name: str) -> None:
        self._marks.append((self.end_ms, name))

    def advance(self, ms: float) -> list[str]:
        """Play up to ``ms`` of audio; the marks passed, in order."""
        before = self.played_ms
        self.played_ms += max(0.0, min(ms, self.end_ms - self.played_ms))
        while self._voiced and self._voiced[0][0] < self.played_ms:
            start, end = self._voiced[0]
            self.voiced_played_ms += max(0.0, min(end, self.played_ms) - max(start, before))
            if end > self.played_ms:
                break
            self._voiced.popleft()
        passed: list[str] = []
        while self._marks and self._marks[0][0] <= self.played_ms:
            passed.append(self._marks.popleft()[1])
        return passed

    def clear(self) -> list[str]:
        """Drop unplayed audio; every pending mark is released (echoed) immediately."""
        self.end_ms = self.played_ms
        self.voiced_end_ms = min(self.voiced_end_ms, self.played_ms)
        while self._voiced and self._voiced[-1][0] >= self.played_ms:
            self._voiced.pop()
        if self._voiced:
            self._voiced[-1][1] = min(self._voiced[-1][1], self.played_ms)
        released = [name for _, name in self._marks]
        self._marks.clear()
        return released
