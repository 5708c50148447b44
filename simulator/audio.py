"""Audio for the simulator: G.711 μ-law, PCM16 helpers, synthetic "speech" and silence.

Two wire formats, both mono:

* ``"pcmu"``: G.711 μ-law at 8 kHz, 1 byte per sample = 8 bytes/ms (Twilio, ``audio/pcmu``).
  Silence is the byte ``0xFF`` (μ-law for +0).
* ``"pcm16"``: signed 16-bit little-endian PCM at 24 kHz = 48 bytes/ms (``audio/pcm``).

The μ-law codec uses lookup tables built once at import (no ``audioop``: it is gone in
Python 3.13). The synthetic speech is deterministic: a voiced buzz with a syllable-rate
envelope and a little noise, far above :data:`SPEECH_THRESHOLD`, so that an energy VAD
detects it the way a real one detects a caller talking.
"""

from __future__ import annotations

import math
import random
import sys
from array import array
from typing import Any, Literal

AudioFormat = Literal["pcmu", "pcm16"]

SAMPLE_RATE: dict[AudioFormat, int] = {"pcmu": 8000, "pcm16": 24000}
BYTES_PER_MS: dict[AudioFormat, int] = {"pcmu": 8, "pcm16": 48}
SILENCE_BYTE_PCMU = 0xFF

# RMS energy (0..1 of full scale) above which a frame counts as speech. Synthetic speech
# sits around 0.1 (never below 0.06 in a 10 ms frame), silence at 0.0.
SPEECH_THRESHOLD = 0.02

_BIAS = 0x84
_CLIP = 32635
_LITTLE_ENDIAN = sys.byteorder == "little"


def _ulaw_encode_sample(sample: int) -> int:
    sign = 0
    if sample < 0:
        sample = -sample
        sign = 0x80
    sample = min(sample, _CLIP) + _BIAS
    exponent = (sample >> 7).bit_length() - 1
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def _ulaw_decode_sample(byte: int) -> int:
    byte = ~byte & 0xFF
    exponent = (byte >> 4) & 0x07
    magnitude = ((((byte & 0x0F) << 3) + _BIAS) << exponent) - _BIAS
    return -magnitude if byte & 0x80 else magnitude


# Encode table indexed by the sample's unsigned 16-bit pattern; decode tables by μ-law byte.
_ENCODE = bytes(_ulaw_encode_sample(u - 65536 if u >= 32768 else u) for u in range(65536))
_DECODE = [_ulaw_decode_sample(b) for b in range(256)]
_DECODE_LE = [(s & 0xFFFF).to_bytes(2, "little") for s in _DECODE]
_DECODE_SQUARED = [s * s for s in _DECODE]


def _read_pcm16(pcm16: bytes, typecode: str) -> array[int]:
    """PCM16 little-endian bytes as an array of ``typecode`` ('h' signed, 'H' raw 16-bit)."""
    if len(pcm16) % 2:
        raise ValueError("PCM16 data must have an even number of bytes")
    samples = array(typecode)
    samples.frombytes(pcm16)
    if not _LITTLE_ENDIAN:
        samples.byteswap()
    return samples


def ulaw_encode(pcm16: bytes) -> bytes:
    """PCM16 little-endian samples → μ-law bytes (one per sample)."""
    return bytes(map(_ENCODE.__getitem__, _read_pcm16(pcm16, "H")))


def ulaw_decode(ulaw: bytes) -> bytes:
    """μ-law bytes → PCM16 little-endian samples."""
    return b"".join(map(_DECODE_LE.__getitem__, ulaw))


def pcm16_to_samples(pcm16: bytes) -> array[int]:
    """PCM16 little-endian bytes → an ``array('h')`` of samples."""
    return _read_pcm16(pcm16, "h")


def samples_to_pcm16(samples: Any) -> bytes:
    """Integer samples (clipped to int16) → PCM16 little-endian bytes."""
    out = array("h", (max(-32768, min(32767, int(s))) for s in samples))
    if not _LITTLE_ENDIAN:
        out.byteswap()
    return out.tobytes()


def format_from_session(fmt: dict[str, Any] | None) -> AudioFormat:
    """Map a Realtime GA format object (``{"type": "audio/pcmu"}``, …) to a simulator format."""
    kind = (fmt or {}).get("type")
    return "pcmu" if kind in ("audio/pcmu", "audio/pcma") else "pcm16"


def bytes_per_ms(fmt: AudioFormat) -> int:
    return BYTES_PER_MS[fmt]


def duration_ms(num_bytes: int, fmt: AudioFormat) -> float:
    """Playing time of ``num_bytes`` of audio in ``fmt``, in milliseconds."""
    return num_bytes / BYTES_PER_MS[fmt]


def byte_count(ms: float, fmt: AudioFormat) -> int:
    """Bytes for ``ms`` of audio, rounded down to a whole sample."""
    n = int(ms * BYTES_PER_MS[fmt])
    return n - n % 2 if fmt == "pcm16" else n


def silence(ms: float, fmt: AudioFormat) -> bytes:
    """``ms`` milliseconds of digital silence."""
    n = byte_count(ms, fmt)
    return bytes([SILENCE_BYTE_PCMU]) * n if fmt == "pcmu" else bytes(n)


def _speech_loop_samples(rate: int, seconds: int = 1) -> list[int]:
    """One seamless loop of speech-like samples (integer frequencies repeat every second)."""
    rng = random.Random(20240611)
    harmonics = ((140, 0.50), (280, 0.30), (420, 0.18), (700, 0.12), (1100, 0.06))
    out: list[int] = []
    for i in range(rate * seconds):
        t = i / rate
        # Syllables at 4 Hz: loudness swings between 60 % and 100 %, never to silence.
        envelope = 0.8 + 0.2 * math.sin(2 * math.pi * 4 * t)
        voiced = sum(amp * math.sin(2 * math.pi * freq * t) for freq, amp in harmonics)
        noise = rng.uniform(-0.05, 0.05)
        out.append(int(9000 * envelope * voiced + 9000 * noise))
    return out


_SPEECH_LOOP: dict[AudioFormat, bytes] = {}


def _speech_loop(fmt: AudioFormat) -> bytes:
    loop = _SPEECH_LOOP.get(fmt)
    if loop is None:
        pcm = samples_to_pcm16(_speech_loop_samples(SAMPLE_RATE[fmt]))
        loop = ulaw_encode(pcm) if fmt == "pcmu" else pcm
        _SPEECH_LOOP[fmt] = loop
    return loop


def speech(ms: float, fmt: AudioFormat, *, offset_ms: float = 0.0) -> bytes:
    """``ms`` milliseconds of synthetic speech; ``offset_ms`` continues a longer utterance."""
    loop = _speech_loop(fmt)
    n = byte_count(ms, fmt)
    start = byte_count(offset_ms, fmt) % len(loop)
    out = bytearray()
    while len(out) < n:
        take = min(n - len(out), len(loop) - start)
        out += loop[start : start + take]
        start = 0
    return bytes(out)


def warm() -> None:
    """Build the speech loops now rather than in the middle of a call."""
    _speech_loop("pcmu")
    _speech_loop("pcm16")


def energy(frame: bytes, fmt: AudioFormat) -> float:
    """RMS energy of a frame as a fraction of full scale (0.0 silence … ~0.7 full-scale sine)."""
    if fmt == "pcmu":
        if not frame:
            return 0.0
        total = sum(map(_DECODE_SQUARED.__getitem__, frame))
        count = len(frame)
    else:
        samples = pcm16_to_samples(frame[: len(frame) - len(frame) % 2])
        if not samples:
            return 0.0
        total = sum(s * s for s in samples)
        count = len(samples)
    return math.sqrt(total / count) / 32768.0


def is_speech(frame: bytes, fmt: AudioFormat, threshold: float = SPEECH_THRESHOLD) -> bool:
    return energy(frame, fmt) >= threshold
