from __future__ import annotations

import base64

from responder.core.playback import MAX_PENDING_MARKS, PlaybackTracker, b64_decoded_len
from tests.support.clock import Clock


def chunk(ms: int) -> str:
    return base64.b64encode(b"\xff" * (8 * ms)).decode()


def test_b64_length_without_decoding() -> None:
    for n in range(0, 20):
        assert b64_decoded_len(base64.b64encode(b"x" * n).decode()) == n


def test_heard_position_follows_acknowledged_marks_only() -> None:
    p = PlaybackTracker(bytes_per_ms=8, clock=Clock())  # a stopped clock: no drift between reads
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
    p = PlaybackTracker(bytes_per_ms=8, clock=Clock())
    m = p.sent("b", chunk(40))
    p.on_mark(m)
    assert p.heard_ms("b") == 40
    assert p.heard_ms("nope") == 0 and p.heard_text("nope") == ""


def test_marks_go_at_a_coarse_grain_first_chunk_then_every_interval_then_the_tail() -> None:
    p = PlaybackTracker(bytes_per_ms=8, mark_interval_ms=100, clock=Clock())
    marks = [p.sent("a", chunk(20)) for _ in range(12)]  # 240 ms in 20 ms chunks
    named = [i for i, m in enumerate(marks) if m is not None]
    assert named == [0, 5, 10]  # after 20 ms (the anchor), 120 ms, 220 ms
    assert p.is_playing()
    tail = p.flush()
    assert tail is not None and p.flush() is None  # nothing unmarked left
    for m in (*[m for m in marks if m], tail):
        assert p.on_mark(m)
    assert not p.is_playing() and p.heard_ms("a") == 240


def test_without_a_tail_mark_the_reply_still_counts_as_playing() -> None:
    p = PlaybackTracker(bytes_per_ms=8, mark_interval_ms=100, clock=Clock())
    first = p.sent("a", chunk(20))
    assert first is not None and p.sent("a", chunk(20)) is None
    assert p.on_mark(first)
    assert p.is_playing()  # 20 ms sent after the last mark: not known to have played


def test_heard_position_is_interpolated_on_the_mark_clock_and_clamped_to_audio_sent() -> None:
    clock = Clock()
    p = PlaybackTracker(bytes_per_ms=8, mark_interval_ms=100, clock=clock)
    marks = [p.sent("a", chunk(20)) for _ in range(25)]  # 500 ms queued at the caller
    assert p.heard_ms("a") == 0  # nothing acknowledged: no clock to go by
    clock.now += 35 / 1000  # 20 ms played, plus the echo's way back
    assert marks[0] is not None and p.on_mark(marks[0])
    assert p.heard_ms("a") == 20
    clock.now += 47 / 1000
    assert p.heard_ms("a") == 67  # 20 + 47 ms of real-time playback since the echo
    clock.now += 10_000 / 1000
    assert p.heard_ms("a") == 500  # never past what was sent


def test_a_clear_freezes_the_heard_position_where_it_was() -> None:
    clock = Clock()
    p = PlaybackTracker(bytes_per_ms=8, mark_interval_ms=100, clock=clock)
    p.note_transcript("a", "Used ")
    first = p.sent("a", chunk(20))
    for _ in range(9):
        p.sent("a", chunk(20))
    p.note_transcript("a", "tents ")
    for _ in range(10):
        p.sent("a", chunk(20))
    assert first is not None and p.on_mark(first)
    clock.now += 150 / 1000
    assert p.heard_ms("a") == 170 and p.heard_text("a") == "Used"
    p.clear()
    clock.now += 1000 / 1000
    assert p.heard_ms("a") == 170 and not p.is_playing()


def test_a_new_items_first_mark_covers_the_previous_items_unmarked_tail() -> None:
    p = PlaybackTracker(bytes_per_ms=8, mark_interval_ms=100, clock=Clock())
    p.sent("a", chunk(20))
    p.sent("a", chunk(20))  # unmarked tail of a
    b = p.sent("b", chunk(20))
    assert b is not None and p.on_mark(b)
    assert p.heard_ms("a") == 40 and p.heard_ms("b") == 20 and not p.is_playing()


def test_interval_zero_marks_every_chunk() -> None:
    p = PlaybackTracker(bytes_per_ms=8, mark_interval_ms=0, clock=Clock())
    assert all(p.sent("a", chunk(20)) is not None for _ in range(5))
    assert p.flush() is None


def test_a_caller_that_never_echoes_does_not_grow_the_pending_marks_without_bound() -> None:
    p = PlaybackTracker(bytes_per_ms=8, mark_interval_ms=0, clock=Clock())
    for _ in range(MAX_PENDING_MARKS + 100):
        p.sent("a", chunk(20))
    assert len(p._pending) == MAX_PENDING_MARKS


def _echo_as_played(
    p: PlaybackTracker, clock: Clock, marks: list[tuple[float, str]], until_ms: float
) -> None:
    """The caller echoes each (position played at, mark) once its playback gets there."""
    for at_ms, mark in [m for m in marks if m[0] <= until_ms]:
        clock.now = at_ms / 1000
        assert p.on_mark(mark)
        marks.remove((at_ms, mark))


def test_the_time_a_caller_waited_for_audio_is_not_counted_as_heard() -> None:
    """The model paused mid-reply: 500 ms sent at once, nothing for a second, then 1 s at once.
    The caller played the first 500 ms, waited, and 50 ms into the rest it speaks over it."""
    clock = Clock(0.0)
    p = PlaybackTracker(bytes_per_ms=8, mark_interval_ms=100, clock=clock)
    pending: list[tuple[float, str]] = []  # (when the caller has played up to it, mark)
    for n in range(25):  # played from t=0 as it arrives: position = time
        if (mark := p.sent("a", chunk(20))) is not None:
            pending.append((20.0 * (n + 1), mark))
    _echo_as_played(p, clock, pending, until_ms=1500)
    clock.now = 1.5  # the caller has been silent for a second
    resumed = [p.sent("a", chunk(20)) for _ in range(50)]
    assert resumed[0] is not None  # the clock is anchored anew, as at an item's first chunk
    clock.now = 1.51
    assert 500 <= p.heard_ms("a") <= 510  # 510 played; was 1500 (the wait counted as playback)
    _echo_as_played(p, clock, [(1520.0, resumed[0])], until_ms=1520)
    clock.now = 1.55
    assert abs(p.heard_ms("a") - 550) <= 20  # played: 500 + 50 ms since it resumed


def test_audio_a_little_ahead_of_real_time_keeps_the_coarse_marks() -> None:
    """Played as it is sent (each echo when its position plays): no buffer ran dry, so marks
    stay one per 100 ms, and the heard position follows playback."""
    clock = Clock(0.0)
    p = PlaybackTracker(bytes_per_ms=8, mark_interval_ms=100, clock=clock)
    pending: list[tuple[float, str]] = []
    named = 0
    for n in range(50):  # a chunk every 19 ms: 20 ms of audio each
        _echo_as_played(p, clock, pending, until_ms=19.0 * n)
        clock.now = 19.0 * n / 1000
        if (mark := p.sent("a", chunk(20))) is not None:
            named += 1
            pending.append((20.0 * (n + 1), mark))  # plays from t=0 without a pause
    assert named == 10  # the first, then one per 100 ms of audio
