"""TranscriptRecorder against a real Redis: server-side truncation (SIP, WebRTC) vs our own."""

from __future__ import annotations

import asyncio

import structlog
import structlog.testing
from redis.exceptions import RedisError

from callrecord.history import HEAD, CallHistory
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
