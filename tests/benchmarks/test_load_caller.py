"""The load caller's model of Twilio's playout: what the listener had heard at a ``clear``.

That position is the truth the loadgen checks the service's ``conversation.item.truncate``
against, so it must follow real-time playout exactly: chunks queue behind each other, a chunk
arriving after the buffer ran dry starts when it arrives, and a payload's length is its decoded
size (160 μ-law bytes are 216 base64 characters with padding, 20 ms, not 20.25).
"""

from __future__ import annotations

import base64
import time

import pytest

from benchmarks.load.caller import LoadCall
from simulator.probe import stamped_audio

CHUNK = base64.b64encode(b"\xff" * 160).decode()  # 20 ms of μ-law


def call() -> LoadCall:
    return LoadCall(1, "http://127.0.0.1:1", "token")


def receive(c: LoadCall, seq: int, at: float) -> None:
    payload, _ = stamped_audio(1, seq, 160)
    c._media(payload, payload, at)


async def test_a_padded_payload_is_its_decoded_length() -> None:
    c = call()
    assert len(CHUNK) == 216
    receive(c, 1, 100.0)
    assert c._playout_end == pytest.approx(100.020)


async def test_heard_position_runs_through_queued_chunks_in_real_time() -> None:
    c = call()
    for seq in range(1, 16):  # 300 ms arrive at once, as a model running ahead sends them
        receive(c, seq, 100.0)
    assert c._heard_at(100.0) == pytest.approx(0.0)
    assert c._heard_at(100.0105) == pytest.approx(10.5)
    assert c._heard_at(100.150) == pytest.approx(150.0)  # 7 chunks and a half
    assert c._heard_at(100.5) == pytest.approx(300.0)  # ran dry: everything queued was heard


async def test_a_chunk_after_an_underrun_starts_when_it_arrives() -> None:
    c = call()
    receive(c, 1, 100.0)
    assert c._heard_at(100.4) == pytest.approx(20.0)  # the buffer ran dry at 100.020
    receive(c, 2, 100.5)
    assert c._heard_at(100.510) == pytest.approx(30.0)


async def test_clear_records_the_heard_position_and_empties_the_buffer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c = call()
    for seq in range(1, 6):
        receive(c, seq, 100.0)
    monkeypatch.setattr(time, "monotonic", lambda: 100.050)
    c._dispatch("clear", {"event": "clear"})
    assert c.stats.heard_at_clear == [(100.050, pytest.approx(50.0))]
    assert c._playout_end == 0.0 and not c._playout and c.stats.clears == [100.050]
    # a second clear with nothing played since: heard no further than at the first
    monkeypatch.setattr(time, "monotonic", lambda: 100.300)
    c._dispatch("clear", {"event": "clear"})
    assert c.stats.heard_at_clear[1] == (100.300, pytest.approx(50.0))
