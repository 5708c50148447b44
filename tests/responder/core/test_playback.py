from __future__ import annotations

import base64

from responder.core.playback import PlaybackTracker, b64_decoded_len


def chunk(ms: int) -> str:
    return base64.b64encode(b"\xff" * (8 * ms)).decode()


def test_b64_length_without_decoding() -> None:
    for n in range(0, 20):
        assert b64_decoded_len(base64.b64encode(b"x" * n).decode()) == n


def test_heard_position_follows_acknowledged_marks_only() -> None:
    p = PlaybackTracker(bytes_per_ms=8)
    m1 = p.sent("a", chunk(100))
    p.note_transcript("a", "Used ")
    m2 = p.sent("a", chunk(100))
    p.note_transcript("a", "tents ")
    m3 = p.sent("a", chunk(100))
    assert p.heard_ms("a") == 0 and p.sent_ms("a") == 300 and p.is_playing()
    assert p.on_mark(m2)  # m1 implied
    assert p.heard_ms("a") == 200
    assert p.heard_text("a") == "Used tents"
    p.clear()
    assert not p.on_mark(m3)  # flushed by clear: never counts as heard
    assert p.heard_ms("a") == 200 and not p.is_playing()
    assert not p.on_mark(m1)


def test_heard_is_clamped_to_audio_sent_and_unknown_items_are_zero() -> None:
    p = PlaybackTracker(bytes_per_ms=8)
    m = p.sent("b", chunk(40))
    p.on_mark(m)
    assert p.heard_ms("b") == 40
    assert p.heard_ms("nope") == 0 and p.heard_text("nope") == ""
