"""Is a chunk of GPT-Live output audio silence?

The primary WebSocket sends one continuous track for the whole session, silence between
replies included, and no event says when the model speaks. The engine forwards only the
voiced chunks to the caller (silence costs a Twilio frame and a mark each, and would keep the
playback "playing" forever) and derives the agent's turns from where voice starts and stops.
One base64 decode and one C-level pass per chunk over its bytes (μ-law) or its samples' high
bytes (PCM16, :func:`_pcm_high_bytes`): no numpy on the hot path.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

# μ-law codes of the two lowest segments (|sample| below ~100 of 8159): 0x60-0x7F and
# 0xE0-0xFF. A chunk is silent when almost every byte is one of them.
_QUIET_ULAW: Final = bytes([*range(0x60, 0x80), *range(0xE0, 0x100)])
# A-law: codes are stored with the even bits inverted; segments 0 and 1 of either sign.
_QUIET_ALAW: Final = bytes(sorted(b ^ 0x55 for b in [*range(0x00, 0x20), *range(0x80, 0xA0)]))
_QUIET_FRACTION_MAX_LOUD: Final = 50  # ≤ 1 loud byte in 50 still counts as silence
# 16-bit PCM is judged by its samples' high bytes (signed): |sample| below 512 has a high byte
# of -2…1, below 2048 one of -8…7 (about -36 and -24 dBFS)
PCM_SILENCE_PEAK: Final = 512
_QUIET_PCM_HIGH: Final = bytes([*range(0x00, 0x02), *range(0xFE, 0x100)])


def _pcm_high_bytes(b64_audio: str) -> bytes | None:
    """The high bytes of a PCM16LE chunk's samples (one slice: no numpy arrays and copies, which
    cost as much as the decode); None if undecodable."""
    try:
        raw = binascii.a2b_base64(b64_audio, strict_mode=True)
    except (binascii.Error, ValueError):
        return None
    return raw[1 : len(raw) - len(raw) % 2 : 2]


def is_silent(b64_audio: str, encoding: str) -> bool:
    """True when the chunk carries no speech; undecodable audio counts as silent (dropped)."""
    if encoding not in ("audio/pcmu", "audio/pcma"):
        high = _pcm_high_bytes(b64_audio)
        return not high or not high.translate(None, _QUIET_PCM_HIGH)
    try:
        raw = base64.b64decode(b64_audio, validate=True)
    except (binascii.Error, ValueError):
        return True
    if not raw:
        return True
    loud = raw.translate(None, _QUIET_ALAW if encoding == "audio/pcma" else _QUIET_ULAW)
    return len(loud) * _QUIET_FRACTION_MAX_LOUD <= len(raw)


def chunk_ms(b64_audio: str, bytes_per_ms: float) -> float:
    """Duration of a base64 chunk, without decoding it."""
    n = len(b64_audio)
    pad = 2 if b64_audio.endswith("==") else 1 if b64_audio.endswith("=") else 0
    return (n * 3 // 4 - pad) / bytes_per_ms if bytes_per_ms else 0.0


# The caller is speaking: most bytes above μ-law segment 3 (|sample| over ~480 of 8159, about
# -25 dBFS), or 16-bit PCM peaking over 2048 (-24 dBFS). Louder than line noise, quieter than
# any voice; held for CALLER_ONSET_MS before it counts, so a click is not a barge-in.
_QUIET_ULAW_CALLER: Final = bytes([*range(0x40, 0x80), *range(0xC0, 0x100)])
_QUIET_ALAW_CALLER: Final = bytes(sorted(b ^ 0x55 for b in [*range(0x00, 0x40), *range(0x80, 0xC0)]))
CALLER_PCM_PEAK: Final = 2048
_QUIET_PCM_HIGH_CALLER: Final = bytes([*range(0x00, 0x08), *range(0xF8, 0x100)])
CALLER_ONSET_MS: Final = 60.0
CALLER_RELEASE_MS: Final = 500.0


def caller_voiced(b64_audio: str, encoding: str) -> bool:
    """Whether a frame of the caller's audio carries speech (a cheap energy gate)."""
    if encoding not in ("audio/pcmu", "audio/pcma"):
        return bool((_pcm_high_bytes(b64_audio) or b"").translate(None, _QUIET_PCM_HIGH_CALLER))
    try:
        raw = base64.b64decode(b64_audio, validate=True)
    except (binascii.Error, ValueError):
        return False
    if not raw:
        return False
    loud = raw.translate(None, _QUIET_ALAW_CALLER if encoding == "audio/pcma" else _QUIET_ULAW_CALLER)
    return len(loud) * 10 >= len(raw) * 3  # 30 % of the samples


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
