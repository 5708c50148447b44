"""μ-law codec, synthetic speech and the energy measure of the simulator."""

from __future__ import annotations

import math

import pytest

from simulator import audio
from simulator.vad import EnergyVad


def test_ulaw_round_trip_every_code() -> None:
    codes = bytes(b for b in range(256) if b != 0x7F)  # 0x7F is −0: it encodes back as +0 (0xFF)
    assert audio.ulaw_encode(audio.ulaw_decode(codes)) == codes
    assert audio.ulaw_encode(audio.ulaw_decode(b"\x7f")) == b"\xff"


def test_ulaw_encode_is_close_to_the_input() -> None:
    samples = [int(20000 * math.sin(i / 7)) for i in range(800)] + [32767, -32768, 0]
    decoded = audio.pcm16_to_samples(audio.ulaw_decode(audio.ulaw_encode(audio.samples_to_pcm16(samples))))
    for original, back in zip(samples, decoded, strict=True):
        assert abs(original - back) <= max(8, abs(original) // 16)
    assert audio.ulaw_encode(audio.samples_to_pcm16([0])) == b"\xff"


@pytest.mark.parametrize(("fmt", "per_ms"), [("pcmu", 8), ("pcm16", 48)])
def test_sizes_and_durations(fmt: audio.AudioFormat, per_ms: int) -> None:
    assert len(audio.silence(20, fmt)) == 20 * per_ms
    assert len(audio.speech(100, fmt)) == 100 * per_ms
    assert audio.duration_ms(per_ms * 250, fmt) == 250
    assert audio.silence(1, "pcmu") == b"\xff" * 8
    assert audio.duration_ms(160, "pcmu") == 20  # one Twilio media frame


@pytest.mark.parametrize("fmt", ["pcmu", "pcm16"])
def test_speech_is_energetic_and_silence_is_not(fmt: audio.AudioFormat) -> None:
    frame = 10 * audio.BYTES_PER_MS[fmt]
    voice = audio.speech(2000, fmt, offset_ms=370)
    energies = [audio.energy(voice[i : i + frame], fmt) for i in range(0, len(voice), frame)]
    assert min(energies) > 2 * audio.SPEECH_THRESHOLD
    assert audio.energy(audio.silence(20, fmt), fmt) == 0.0
    assert audio.is_speech(voice[:frame], fmt) and not audio.is_speech(audio.silence(10, fmt), fmt)
    # offsets continue one utterance seamlessly
    assert audio.speech(40, fmt, offset_ms=20) == audio.speech(60, fmt)[20 * audio.BYTES_PER_MS[fmt] :]


def test_vad_counts_audio_time_not_wall_time() -> None:
    vad = EnergyVad("pcmu", silence_ms=300)
    events = vad.feed(audio.silence(200, "pcmu"))
    # fed in odd-sized pieces: frame alignment is carried over between appends
    data = audio.speech(500, "pcmu") + audio.silence(400, "pcmu")
    for i in range(0, len(data), 333):
        events += vad.feed(data[i : i + 333])
    assert [(e.kind, e.audio_ms) for e in events] == [("started", 200), ("stopped", 1000)]
    assert not vad.speaking
