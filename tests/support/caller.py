"""The caller side of a call in memory: a :class:`responder.core.contract.CallerLink` double that
records the audio sent to play (with each chunk's mark) and counts the clears."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class RecordingCaller:
    audio: list[tuple[str, str | None]] = field(default_factory=list)
    clears: int = 0
    writable_now: bool = False  # whether the *_now paths write (a socket that takes it at once)

    async def send_audio(self, b64_audio: str, mark: str | None) -> None:
        self.audio.append((b64_audio, mark))

    def send_audio_now(self, b64_audio: str, mark: Callable[[], str | None]) -> bool:
        if self.writable_now:
            self.audio.append((b64_audio, mark()))
        return self.writable_now

    async def send_mark(self, mark: str) -> None:
        return None

    async def clear_audio(self) -> None:
        self.clears += 1

    def clear_now(self) -> bool:
        if self.writable_now:
            self.clears += 1
        return self.writable_now
