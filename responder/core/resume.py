"""What a call's record needs before a new engine session takes over after a drop.

Used by :meth:`responder.core.controller.CallController.resume` only; each step works on the
controller's public parts (its history, recorder and playback) and says what it found.
"""

from __future__ import annotations

from redis.exceptions import RedisError
from structlog.typing import FilteringBoundLogger

from callrecord.history import CallHistory, HistoryItem
from responder.core.playback import PlaybackTracker
from responder.core.recorder import TranscriptRecorder


def short(exc: BaseException | None) -> str:
    """An exception for a log line: a refused upgrade's repr carries every response header."""
    return repr(exc)[:200]


async def settle_cut_off_item(
    call_id: str, history: CallHistory, recorder: TranscriptRecorder, playback: PlaybackTracker,
    log: FilteringBoundLogger,
) -> None:  # fmt: skip
    """The assistant item that was being said when the socket dropped never got its
    transcript: record it as interrupted with what the caller heard of it."""
    item_id = playback.current_item
    if item_id is None or item_id in recorder.interrupted or item_id in recorder.out_of_band:
        return
    try:
        item = await history.get_item(call_id, item_id)
        if item is None or item.kind != "message" or item.status != "in_progress":
            return
        await recorder.interrupted_at(
            item_id, playback.heard_ms(item_id), playback.heard_text(item_id), playback.full_text(item_id)
        )
    except RedisError as exc:
        log.error("call.cut_off_item_not_recorded", item_id=item_id, error=short(exc))


async def give_up_lost_transcripts(
    call_id: str, history: CallHistory, recorder: TranscriptRecorder, items: list[HistoryItem],
    log: FilteringBoundLogger,
) -> None:  # fmt: skip
    """A caller turn whose transcript had not arrived when the socket dropped never gets one
    (the session that would transcribe it is gone): it is recorded as failed, and whoever
    waits for it (the supervisor) stops waiting. It is not replayed; the caller will repeat."""
    for item in items:
        if item.kind != "message" or item.role != "user" or item.status != "in_progress" or item.text:
            continue
        log.warning("call.user_turn_lost", item_id=item.id, reason="socket dropped before its transcript")
        recorder.transcript_ready(item.id).set()
        try:
            await history.update_item(call_id, item.id, status="failed")
        except RedisError as exc:
            log.error("call.user_turn_lost_not_recorded", item_id=item.id, error=short(exc))


async def unrecorded_answers(
    call_id: str, history: CallHistory, recorder: TranscriptRecorder, *, replayed: frozenset[str],
    answered: set[str], cancelled: set[str], log: FilteringBoundLogger,
) -> list[tuple[str, str]]:  # fmt: skip
    """Supervisor answers sent into the dying socket (their output never came back as an
    item): (hand-over id, text) from their recorded decisions, for the new session."""
    found: list[tuple[str, str]] = []
    for handover_id, decision_id in recorder.output_anchors():
        if handover_id in answered or handover_id not in replayed or handover_id in cancelled:
            continue
        try:
            decision = await history.get_item(call_id, decision_id)
        except RedisError as exc:
            log.error("call.answer_not_requeued", tool_call_id=handover_id, error=short(exc))
            continue
        if decision is not None and decision.text:
            log.info("call.answer_requeued", tool_call_id=handover_id, decision_id=decision_id)
            found.append((handover_id, decision.text))
    return found
