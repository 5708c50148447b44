"""Audio of the GPT-Live double: the four session formats, synthetic speech and silence in each.

GPT-Live's primary WebSocket carries input and output in one format chosen at ``session.start``
(``audio.format``): PCM16LE mono at 16 or 24 kHz, G.711 μ-law or A-law at 8 kHz. The
simulator's speech and energy code (:mod:`simulator.audio`) knows μ-law 8 kHz and PCM16 24 kHz;
this module adds the other two on top of it, without touching it:

* A-law ↔ μ-law are byte-for-byte translation tables (built once at import), so A-law speech
  is μ-law speech translated, and A-law input is translated to μ-law for the turn detector;
* PCM16 16 kHz speech is the 24 kHz speech loop resampled once (nearest sample).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from simulator import audio
from simulator.vad import FRAME_MS, EnergyVad

Encoding = Literal["audio/pcm", "audio/pcmu", "audio/pcma"]
# What the real server accepts (SDK: AudioPCM rate 16000|24000; G.711 "uses 8000 Hz").
RATES: dict[str, tuple[int, ...]] = {
    "audio/pcm": (16000, 24000),
    "audio/pcmu": (8000,),
    "audio/pcma": (8000,),
}
DEFAULT_FORMAT: dict[str, Any] = {"type": "audio/pcm", "rate": 24000}
SILENCE_BYTE_PCMA = 0xD5  # A-law code of 0


def _alaw_decode(code: int) -> int:
    code ^= 0x55
    magnitude = (code & 0x0F) << 4
    segment = (code & 0x70) >> 4
    if segment == 0:
        magnitude += 8
    else:
        magnitude = (magnitude + 0x108) << (segment - 1)
    return magnitude if code & 0x80 else -magnitude


_ALAW_SEGMENT_ENDS = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _alaw_encode(sample: int) -> int:
    value = sample >> 3
    if value >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        value = -value - 1
    segment = next((i for i, end in enumerate(_ALAW_SEGMENT_ENDS) if value <= end), 8)
    if segment >= 8:
        return 0x7F ^ mask
    code = segment << 4
    code |= (value >> 1 if segment < 2 else value >> segment) & 0x0F
    return code ^ mask


# bytes.translate tables: A-law → μ-law (for the turn detector), μ-law → A-law (for speech).
ALAW_TO_ULAW = audio.ulaw_encode(audio.samples_to_pcm16(_alaw_decode(code) for code in range(256)))
_ULAW_SAMPLES = audio.pcm16_to_samples(audio.ulaw_decode(bytes(range(256))))
ULAW_TO_ALAW = bytes(_alaw_encode(sample) for sample in _ULAW_SAMPLES)


@dataclass(frozen=True)
class LiveFormat:
    """One Live session format: its encoding and sample rate."""

    encoding: Encoding
    rate: int

    @classmethod
    def of(cls, fmt: dict[str, Any] | None) -> LiveFormat:
        fmt = fmt or DEFAULT_FORMAT
        return cls(fmt["type"], int(fmt["rate"]))

    @property
    def sample_bytes(self) -> int:
        return 2 if self.encoding == "audio/pcm" else 1

    @property
    def bytes_per_ms(self) -> int:
        return self.rate // 1000 * self.sample_bytes

    def duration_ms(self, num_bytes: int) -> float:
        return num_bytes / self.bytes_per_ms

    def silence(self, ms: int) -> bytes:
        n = ms * self.bytes_per_ms
        if self.encoding == "audio/pcmu":
            return bytes([audio.SILENCE_BYTE_PCMU]) * n
        if self.encoding == "audio/pcma":
            return bytes([SILENCE_BYTE_PCMA]) * n
        return bytes(n)

    def speech(self, ms: int, *, offset_ms: int = 0) -> bytes:
        """``ms`` of synthetic speech; ``offset_ms`` continues a longer utterance."""
        if self.encoding == "audio/pcmu":
            return audio.speech(ms, "pcmu", offset_ms=offset_ms)
        if self.encoding == "audio/pcma":
            return audio.speech(ms, "pcmu", offset_ms=offset_ms).translate(ULAW_TO_ALAW)
        if self.rate == 24000:
            return audio.speech(ms, "pcm16", offset_ms=offset_ms)
        loop = _pcm16k_loop()
        n, start = ms * self.bytes_per_ms, (offset_ms * self.bytes_per_ms) % len(loop)
        out = bytearray()
        while len(out) < n:
            take = min(n - len(out), len(loop) - start)
            out += loop[start : start + take]
            start = 0
        return bytes(out)

    def vad(self, *, silence_ms: int) -> EnergyVad:
        """An energy turn detector for input in this format (fed through :meth:`for_vad`)."""
        if self.encoding != "audio/pcm":
            return EnergyVad("pcmu", silence_ms=silence_ms)
        return EnergyVad("pcm16", silence_ms=silence_ms, frame_bytes=self.bytes_per_ms * FRAME_MS)

    def vad_silence(self, num_bytes: int) -> bytes:
        """Silence as the turn detector takes it in place of ``num_bytes`` of input (muted)."""
        return (
            bytes(num_bytes) if self.encoding == "audio/pcm" else bytes([audio.SILENCE_BYTE_PCMU]) * num_bytes
        )

    def for_vad(self, raw: bytes) -> bytes:
        return raw.translate(ALAW_TO_ULAW) if self.encoding == "audio/pcma" else raw


_PCM16K_LOOP: list[bytes] = []


def _pcm16k_loop() -> bytes:
    if not _PCM16K_LOOP:
        samples = np.frombuffer(audio.speech(1000, "pcm16"), dtype="<i2")
        picks = np.round(np.arange(16000) * 1.5).astype(np.int64) % len(samples)
        _PCM16K_LOOP.append(samples[picks].astype("<i2").tobytes())
    return _PCM16K_LOOP[0]


def warm() -> None:
    """Build the speech loops now rather than in the middle of a call."""
    audio.warm()
    _pcm16k_loop()
