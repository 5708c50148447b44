"""Energy-based turn detection for the simulated realtime model, in AUDIO time.

Time is counted from the bytes appended, never from the wall clock, so a test that streams
audio faster than real time sees exactly the same turns as a real-time caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from simulator.audio import SPEECH_THRESHOLD, AudioFormat, bytes_per_ms, energy

FRAME_MS = 10
SPEECH_START_MS = 60  # energetic audio needed before speech counts as started
DEFAULT_SILENCE_MS = 500  # server_vad default silence_duration_ms; semantic_vad always uses it


@dataclass(frozen=True)
class VadEvent:
    kind: Literal["started", "stopped"]
    audio_ms: int  # audio_start_ms for "started", audio_end_ms for "stopped"


class EnergyVad:
    """Feed appended audio, get speech start/stop events with their audio timestamps."""

    def __init__(
        self,
        fmt: AudioFormat,
        *,
        silence_ms: int = DEFAULT_SILENCE_MS,
        start_ms: int = SPEECH_START_MS,
        threshold: float = SPEECH_THRESHOLD,
        frame_bytes: int | None = None,
    ) -> None:
        """``frame_bytes``: bytes per 10 ms frame when ``fmt``'s rate is not the default one
        (GPT-Live's 16 kHz PCM16: 320)."""
        self.fmt = fmt
        self.silence_ms = silence_ms
        self.start_ms = start_ms
        self.threshold = threshold
        self.total_ms = 0  # audio time of everything fed so far (session-wide)
        self.speaking = False
        self._frame_bytes = frame_bytes or bytes_per_ms(fmt) * FRAME_MS
        self._pending = b""
        self._run_start_ms: int | None = None  # start of the current energetic run
        self._silent_ms = 0

    def feed(self, chunk: bytes) -> list[VadEvent]:
        data = self._pending + chunk if self._pending else chunk
        events: list[VadEvent] = []
        size = self._frame_bytes
        end = len(data) - len(data) % size
        for pos in range(0, end, size):
            event = self._frame(energy(data[pos : pos + size], self.fmt) >= self.threshold)
            if event is not None:
                events.append(event)
        self._pending = data[end:]
        return events

    def reset(self) -> None:
        """Forget the current utterance (buffer cleared or committed by the client)."""
        self.speaking = False
        self._run_start_ms = None
        self._silent_ms = 0

    def _frame(self, loud: bool) -> VadEvent | None:
        frame_start = self.total_ms
        self.total_ms += FRAME_MS
        if not self.speaking:
            if not loud:
                self._run_start_ms = None
                return None
            if self._run_start_ms is None:
                self._run_start_ms = frame_start
            if self.total_ms - self._run_start_ms >= self.start_ms:
                self.speaking = True
                self._silent_ms = 0
                return VadEvent("started", self._run_start_ms)
            return None
        self._silent_ms = 0 if loud else self._silent_ms + FRAME_MS
        if self._silent_ms >= self.silence_ms:
            self.reset()
            return VadEvent("stopped", self.total_ms)
        return None
