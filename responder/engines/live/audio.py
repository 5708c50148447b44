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
