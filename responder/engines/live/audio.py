"""Is a chunk of GPT-Live output audio silence?

The primary WebSocket sends one continuous track for the whole session, silence between
replies included, and no event says when the model speaks. The engine forwards only the
voiced chunks to the caller (silence costs a Twilio frame and a mark each, and would keep the
playback "playing" forever) and derives the agent's turns from where voice starts and stops.
One base64 decode and one C-level pass per ~100 ms chunk: a few microseconds.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

import numpy as np

# μ-law codes of the two lowest segments (|sample| below ~100 of 8159): 0x60-0x7F and
# 0xE0-0xFF. A chunk is silent when almost every byte is one of them.
_QUIET_ULAW: Final = bytes([*range(0x60, 0x80), *range(0xE0, 0x100)])
# A-law: codes are stored with the even bits inverted; segments 0 and 1 of either sign.
_QUIET_ALAW: Final = bytes(sorted(b ^ 0x55 for b in [*range(0x00, 0x20), *range(0x80, 0xA0)]))
_QUIET_FRACTION_MAX_LOUD: Final = 50  # ≤ 1 loud byte in 50 still counts as silence
PCM_SILENCE_PEAK: Final = 500  # |sample| of 16-bit PCM below this: about -36 dBFS


def is_silent(b64_audio: str, encoding: str) -> bool:
    """True when the chunk carries no speech; undecodable audio counts as silent (dropped)."""
    try:
        raw = base64.b64decode(b64_audio, validate=True)
    except (binascii.Error, ValueError):
        return True
    if not raw:
        return True
    if encoding in ("audio/pcmu", "audio/pcma"):
        loud = raw.translate(None, _QUIET_ALAW if encoding == "audio/pcma" else _QUIET_ULAW)
        return len(loud) * _QUIET_FRACTION_MAX_LOUD <= len(raw)
    samples = np.frombuffer(raw[: len(raw) - len(raw) % 2], dtype="<i2")
    return samples.size == 0 or int(np.abs(samples.astype(np.int32)).max()) < PCM_SILENCE_PEAK


def chunk_ms(b64_audio: str, bytes_per_ms: float) -> float:
    """Duration of a base64 chunk, without decoding it."""
    n = len(b64_audio)
    pad = 2 if b64_audio.endswith("==") else 1 if b64_audio.endswith("=") else 0
    return (n * 3 // 4 - pad) / bytes_per_ms if bytes_per_ms else 0.0


# The caller is speaking: most bytes above μ-law segment 3 (|sample| over ~480 of 8159, about
# -25 dBFS), or 16-bit PCM peaking over 2000 (-24 dBFS). Louder than line noise, quieter than
# any voice; held for CALLER_ONSET_MS before it counts, so a click is not a barge-in.
_QUIET_ULAW_CALLER: Final = bytes([*range(0x40, 0x80), *range(0xC0, 0x100)])
_QUIET_ALAW_CALLER: Final = bytes(sorted(b ^ 0x55 for b in [*range(0x00, 0x40), *range(0x80, 0xC0)]))
CALLER_PCM_PEAK: Final = 2000
CALLER_ONSET_MS: Final = 60.0
CALLER_RELEASE_MS: Final = 500.0


def caller_voiced(b64_audio: str, encoding: str) -> bool:
    """Whether a frame of the caller's audio carries speech (a cheap energy gate)."""
    try:
        raw = base64.b64decode(b64_audio, validate=True)
    except (binascii.Error, ValueError):
        return False
    if not raw:
        return False
    if encoding in ("audio/pcmu", "audio/pcma"):
        loud = raw.translate(None, _QUIET_ALAW_CALLER if encoding == "audio/pcma" else _QUIET_ULAW_CALLER)
        return len(loud) * 10 >= len(raw) * 3  # 30 % of the samples
    samples = np.frombuffer(raw[: len(raw) - len(raw) % 2], dtype="<i2")
    return samples.size > 0 and int(np.abs(samples.astype(np.int32)).max()) >= CALLER_PCM_PEAK


class CallerVoice:
    """Speech onset on the caller's audio: voiced for :data:`CALLER_ONSET_MS` in a row starts
    it, :data:`CALLER_RELEASE_MS` unvoiced ends it. A small pure state object."""

    def __init__(self) -> None:
        self.speaking = False
        self._voiced_ms = 0.0
        self._quiet_ms = 0.0

    def feed(self, voiced: bool, ms: float) -> bool:
        """Account for one frame; True exactly when speech starts."""
        if voiced:
            self._voiced_ms += ms
            self._quiet_ms = 0.0
            if not self.speaking and self._voiced_ms >= CALLER_ONSET_MS:
                self.speaking = True
                return True
            return False
        self._quiet_ms += ms
        if self._quiet_ms >= CALLER_RELEASE_MS:
            self.speaking, self._voiced_ms = False, 0.0
        elif not self.speaking:
            self._voiced_ms = 0.0
        return False
