"""TranscriptRecorder against a real Redis: server-side truncation (SIP, WebRTC) vs our own."""

from __future__ import annotations

import asyncio

import structlog
import structlog.testing
from redis.asyncio import Redis
from redis.exceptions import RedisError

from callrecord.history import HEAD, CallHistory
from infra.metrics import REGISTRY
from responder.core.engine import AgentTruncated, CallerTranscript, ConversationItem, ItemAdded
from responder.core.recorder import TranscriptRecorder


def assistant_added(item_id: str, previous: str | None = None) -> ItemAdded:
    return ItemAdded(ConversationItem(item_id, "message", "assistant"), previous or HEAD)


async def test_server_truncation_marks_the_item_interrupted_and_keeps_the_transcript(
    history: CallHistory,
) -> None:
    rec = TranscriptRecorder("rtc_rec1", history, structlog.get_logger("test"))
    await history.start_call("rtc_rec1", transport="sip")
    await rec.item_added(assistant_added("item_a"))
    await rec.truncated_by_engine(AgentTruncated("item_a", 1200))
    await rec.assistant_transcript("item_a", "Our return window is sixty days for most items.", "answer")
    assert await rec.flush(5.0)
    [item] = await history.get_items("rtc_rec1")
    assert item.status == "interrupted" and item.audio_end_ms == 1200
    assert item.text == item.full_text == "Our return window is sixty days for most items."


async def test_server_echo_of_our_own_truncate_keeps_the_heard_text(history: CallHistory) -> None:
    rec = TranscriptRecorder("CArec2", history, structlog.get_logger("test"))
    await history.start_call("CArec2", transport="twilio")
    await rec.item_added(assistant_added("item_b"))
    await rec.interrupted_at("item_b", 800, "Our return window", "Our return window is sixty days.")
    await rec.truncated_by_engine(AgentTruncated("item_b", 800))
    await rec.assistant_transcript("item_b", "Our return window is sixty days.", "answer")
    assert await rec.flush(5.0)
    [item] = await history.get_items("CArec2")
    assert item.status == "interrupted" and item.audio_end_ms == 800
    assert item.text == "Our return window" and item.full_text == "Our return window is sixty days."


async def test_writes_leave_the_pump_at_once_and_land_in_order(history: CallHistory) -> None:
    """The recorder never makes the event pump wait for Redis: a user turn, its transcript and
    the assistant's reply are queued in the call's write lane and land in that order; the
    transcript counts as ready only once it is in Redis."""
    rec = TranscriptRecorder("CArec3", history, structlog.get_logger("test"))
    await history.start_call("CArec3", transport="twilio")
    await rec.item_added(ItemAdded(ConversationItem("item_u", "message", "user"), HEAD))
    await rec.user_transcript(CallerTranscript("item_u", "Can I return a tent?"))
    ready = rec.transcript_ready("item_u")
    await rec.item_added(assistant_added("item_r", previous="item_u"))
    await rec.assistant_transcript("item_r", "Yes, within 60 days.", "answer")
    assert rec.lane.pending > 0 and not ready.is_set()  # nothing awaited Redis yet
    await asyncio.wait_for(ready.wait(), 5.0)
    stored = await history.get_item("CArec3", "item_u")
    assert stored is not None and stored.text == "Can I return a tent?"  # ready means written
    assert await rec.flush(5.0)
    items = await history.get_items("CArec3")
    assert [(i.id, i.text, i.status) for i in items] == [
        ("item_u", "Can I return a tent?", "completed"),
        ("item_r", "Yes, within 60 days.", "completed"),
    ]


async def test_a_failed_write_is_logged_and_the_next_ones_still_land(history: CallHistory) -> None:
    rec = TranscriptRecorder("CArec4", history, structlog.get_logger("test"))

    async def broken() -> None:
        raise RedisError("boom")

    with structlog.testing.capture_logs() as logs:
        rec.lane.submit("add_item", broken)
        await rec.dtmf("5")
        assert await rec.flush(5.0)
    assert [e["operation"] for e in logs if e["event"] == "call.history_write_failed"] == ["add_item"]
    [dtmf] = await history.get_items("CArec4")
    assert dtmf.kind == "dtmf" and dtmf.text == "5"


async def test_key_presses_past_the_rate_are_refused_with_one_warning(history: CallHistory) -> None:
    """Issue 14, item 5: 2,000 key presses in a moment gave 2,000 items and 2,000 log lines.
    Now the burst is recorded, the rest refused: counted, and one warning says so."""
    rec = TranscriptRecorder(
        "CAkeys", history, structlog.get_logger("test"), dtmf_rate_per_s=10, dtmf_burst=20
    )
    await history.start_call("CAkeys", transport="twilio")
    before = REGISTRY.get_sample_value("responder_dtmf_refused_total", {"reason": "rate"}) or 0.0
    with structlog.testing.capture_logs() as logs:
        recorded = [rec.key_press("7", at=100.0 + n / 10_000) for n in range(2000)]  # 0.2 s of presses
        assert rec.key_press("8", at=101.0)  # a second later: ten more tokens
    assert recorded.count(True) == 20 + 1  # the burst, and the one token 0.1 s of the rate gives
    assert await rec.flush(5.0)
    items = await history.get_items("CAkeys")
    assert len(items) == 22 and items[-1].text == "8"
    refused = REGISTRY.get_sample_value("responder_dtmf_refused_total", {"reason": "rate"})
    assert refused == before + 1979
    events = [e["event"] for e in logs]
    assert events.count("call.dtmf") == 22 and events.count("call.dtmf_rate_limited") == 1


async def test_items_past_the_call_limit_are_refused_counted_and_logged_once(
    redis: Redis, key_prefix: str
) -> None:
    history = CallHistory(redis, prefix=key_prefix, ttl_s=600, max_items=50)
    rec = TranscriptRecorder(
        "CAfull", history, structlog.get_logger("test"), dtmf_rate_per_s=1e6, dtmf_burst=10**6
    )
    await history.start_call("CAfull", transport="twilio")
    before = REGISTRY.get_sample_value("responder_call_items_refused_total", {"kind": "dtmf"}) or 0.0
    with structlog.testing.capture_logs() as logs:
        for n in range(100):
            assert rec.key_press("1", at=float(n))
        user = ConversationItem("item_u", "message", "user")
        await rec.item_added(ItemAdded(user, HEAD))
        await rec.item_added(assistant_added("item_a", "item_u"))
        assert await rec.flush(5.0)
    assert rec.refused == {"dtmf": 55}
    assert REGISTRY.get_sample_value("responder_call_items_refused_total", {"kind": "dtmf"}) == before + 55
    assert [e["event"] for e in logs].count("call.items_capped") == 1
    items = await history.get_items("CAfull")
    assert len(items) == 47  # 45 key presses; the conversation has its reserve
    assert [i.id for i in items if i.kind == "message"] == ["item_u", "item_a"]
