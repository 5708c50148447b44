"""TranscriptRecorder against a real Redis: server-side truncation (SIP, WebRTC) vs our own."""

from __future__ import annotations

import structlog

from responder.recorder import TranscriptRecorder
from supervisor.history import CallHistory


def assistant_added(item_id: str, previous: str | None = None) -> dict[str, object]:
    item = {"id": item_id, "type": "message", "role": "assistant", "content": []}
    return {"type": "conversation.item.added", "previous_item_id": previous, "item": item}


async def test_server_truncation_marks_the_item_interrupted_and_keeps_the_transcript(
    history: CallHistory,
) -> None:
    rec = TranscriptRecorder("rtc_rec1", history, structlog.get_logger("test"))
    await history.start_call("rtc_rec1", transport="sip")
    await rec.item_added(assistant_added("item_a"))
    await rec.truncated_by_server(
        {"type": "conversation.item.truncated", "item_id": "item_a", "audio_end_ms": 1200}
    )
    await rec.assistant_transcript("item_a", "Our return window is sixty days for most items.", "answer")
    [item] = await history.get_items("rtc_rec1")
    assert item.status == "interrupted" and item.audio_end_ms == 1200
    assert item.text == item.full_text == "Our return window is sixty days for most items."


async def test_server_echo_of_our_own_truncate_keeps_the_heard_text(history: CallHistory) -> None:
    rec = TranscriptRecorder("CArec2", history, structlog.get_logger("test"))
    await history.start_call("CArec2", transport="twilio")
    await rec.item_added(assistant_added("item_b"))
    await rec.interrupted_at("item_b", 800, "Our return window", "Our return window is sixty days.")
    await rec.truncated_by_server(
        {"type": "conversation.item.truncated", "item_id": "item_b", "audio_end_ms": 800}
    )
    await rec.assistant_transcript("item_b", "Our return window is sixty days.", "answer")
    [item] = await history.get_items("CArec2")
    assert item.status == "interrupted" and item.audio_end_ms == 800
    assert item.text == "Our return window" and item.full_text == "Our return window is sixty days."
