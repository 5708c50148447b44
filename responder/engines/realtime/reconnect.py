"""A dropped Realtime socket does not end the call: park it, open a new session, replay, resume.

:func:`run_realtime_call` runs one call's Realtime side. When the socket closes or fails while
the caller is still there and the service did not end the call, the call is *parked*: a
:class:`ParkedConnection` stands in for the socket, so that nothing the call does meanwhile
fails or is lost. Then up to ``len(RECONNECT_BACKOFF_S)`` attempts open a new session (after
0.25, 0.5 and 1 s); the call gives up (``call.realtime_reconnect_failed``, the transport ends
it as ``realtime_failed``) when they all fail, or after :data:`MAX_DROPS_PER_CALL` drops.

On a new session :func:`resume_controller` sends the same ``session.update``, replays the
recorded history (:mod:`responder.engines.realtime.replay`, newest :data:`REPLAY_LIMIT` items, sent
back to back), resets what belonged to the dead session (active response, pending response
requests, playback marks) and goes on: no new greeting; a supervisor answer that was queued
(or sent while parked) is delivered and asked for; a caller turn left unanswered gets a
response. The replayed items are echoed by the server as ``conversation.item.added``; they
are already in the history and are not recorded again.

Caller audio while parked: the most recent :data:`AUDIO_BUFFER_MS` are kept and sent once the
new session has its history (older audio is dropped and counted in the
``call.realtime_reconnected`` log as ``audio_dropped_ms``): the caller's words right before
the session came back are heard, a long monologue into a dead line is not.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError
from structlog.typing import FilteringBoundLogger

from callrecord.history import HistoryItem
from infra import metrics
from responder.core.responses import ResponseTracker
from responder.engines.realtime.connection import RealtimeConnection
from responder.engines.realtime.replay import REPLAY_LIMIT, awaits_answer, replay_events

if TYPE_CHECKING:
    from responder.core.controller import CallController

RECONNECT_BACKOFF_S: tuple[float, ...] = (0.25, 0.5, 1.0)  # one attempt after each delay
MAX_DROPS_PER_CALL = 5
AUDIO_BUFFER_MS = 2000
REPLAY_WRITES_WAIT_S = 2.0  # history writes of the dead session still queued
ITEM_EVENTS = ("conversation.item.added", "conversation.item.created")

Opener = Callable[[], AbstractAsyncContextManager[RealtimeConnection]]


class RealtimeReconnectFailed(Exception):
    """The Realtime session could not be brought back: the call ends as ``realtime_failed``."""


class ParkedConnection(RealtimeConnection):
    """Stands in for a dropped socket while the call reconnects.

    Items the call creates meanwhile (a supervisor answer's ``function_call_output``) are kept
    for the new session; other events (``response.create`` …) are dropped, as the new session
    asks again for what is due. Caller audio is kept up to ``audio_limit_chars`` of base64,
    newest first.
    """

    def __init__(self, call_id: str, audio_limit_chars: int) -> None:  # no socket: no super().__init__
        self.call_id = call_id
        self._ids = itertools.count(1)
        self._limit = max(0, audio_limit_chars)
        self.items: list[dict[str, Any]] = []
        self.dropped_types: list[str] = []
        self.audio: deque[str] = deque()
        self._audio_chars = 0
        self.audio_dropped_chars = 0

    def new_event_id(self) -> str:
        return f"evt_{self.call_id[-8:]}_p{next(self._ids)}"

    async def send(self, event: dict[str, Any]) -> str:
        event_id: str = event.setdefault("event_id", self.new_event_id())
        if event.get("type") == "conversation.item.create":
            self.items.append(event)
        else:
            self.dropped_types.append(str(event.get("type")))
        return event_id

    async def append_audio(self, b64_audio: str) -> None:
        self.audio.append(b64_audio)
        self._audio_chars += len(b64_audio)
        while self._audio_chars > self._limit and self.audio:
            dropped = self.audio.popleft()
            self._audio_chars -= len(dropped)
            self.audio_dropped_chars += len(dropped)

    def sent_type(self, event_id: str | None) -> str | None:
        return None

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        return
        yield  # pragma: no cover - makes this an (empty) async generator

    async def close(self) -> None:
        return None


class _SkipReplayed:
    """Wraps the recorder's item handler: items the service replayed are already recorded."""

    def __init__(self, inner: Callable[[dict[str, Any]], Any]) -> None:
        self.inner = inner
        self.ids: set[str] = set()

    async def __call__(self, event: dict[str, Any]) -> None:
        if (event.get("item") or {}).get("id") in self.ids:
            return
        await self.inner(event)


def _short(exc: BaseException | None) -> str:
    """An exception for a log line: a refused upgrade's repr carries every response header."""
    return repr(exc)[:200]


def _b64_chars(controller: CallController, ms: int) -> int:
    return int(controller.config.bytes_per_ms * ms * 4 / 3)


def _b64_ms(controller: CallController, chars: int) -> int:
    return int(chars * 3 / 4 / controller.config.bytes_per_ms) if controller.config.bytes_per_ms else 0


# -- resuming the controller on a new session ------------------------------------------------
async def resume_controller(
    controller: CallController, rt: RealtimeConnection, session: dict[str, Any]
) -> int:
    """Attach ``rt`` (a new session) to ``controller``; returns the number of items replayed."""
    c = controller
    parked = c.rt if isinstance(c.rt, ParkedConnection) else ParkedConnection(c.call_id, 0)
    await rt.send({"type": "session.update", "session": session})
    await c.recorder.flush(REPLAY_WRITES_WAIT_S)  # replay what the old session said, all of it
    await _settle_cut_off_item(c)
    await c.recorder.flush(REPLAY_WRITES_WAIT_S)
    try:
        items = await c.history.get_items(c.call_id, limit=REPLAY_LIMIT * 2)
    except RedisError as exc:  # the new session starts without memory rather than not at all
        c.log.error("call.replay_history_unavailable", error=_short(exc))
        metrics.REDIS_ERRORS.labels(operation="replay").inc()
        items = []
    await _give_up_lost_transcripts(c, items)
    events = replay_events(items, REPLAY_LIMIT)
    skip = _skip_filter(c)
    skip.ids.update(e["item"]["id"] for e in events)
    for event in events:
        await rt.send(event)
    await _requeue_unrecorded_answers(c, events, parked)
    # what belonged to the dead session
    c.responses = ResponseTracker()
    c.playback.clear()
    c._user_speaking = False
    c.rt = rt
    for event in parked.items:  # tool outputs produced while parked, after their calls
        await rt.send(event)
    c._notify()
    if c._pending_outputs or c._answer_due:
        await c._flush_outputs()
    elif awaits_answer(events) and not parked.items and not c.closed:
        await c._request_response("answer", {})
    for chunk in parked.audio:
        await rt.append_audio(chunk)
    return len(events)


def _skip_filter(controller: CallController) -> _SkipReplayed:
    handlers = controller._handlers
    current = handlers[ITEM_EVENTS[0]]
    if isinstance(current, _SkipReplayed):
        return current
    skip = _SkipReplayed(current)
    for name in ITEM_EVENTS:
        handlers[name] = skip
    return skip


async def _give_up_lost_transcripts(controller: CallController, items: list[HistoryItem]) -> None:
    """A caller turn whose transcript had not arrived when the socket dropped never gets one
    (the session that would transcribe it is gone): it is recorded as failed, and whoever
    waits for it (the supervisor) stops waiting. It is not replayed; the caller will repeat."""
    c = controller
    for item in items:
        if item.kind != "message" or item.role != "user" or item.status != "in_progress" or item.text:
            continue
        c.log.warning("call.user_turn_lost", item_id=item.id, reason="socket dropped before its transcript")
        c.recorder.transcript_ready(item.id).set()
        try:
            await c.history.update_item(c.call_id, item.id, status="failed")
        except RedisError as exc:
            c.log.error("call.user_turn_lost_not_recorded", item_id=item.id, error=_short(exc))


async def _requeue_unrecorded_answers(
    controller: CallController, events: list[dict[str, Any]], parked: ParkedConnection
) -> None:
    """A supervisor answer sent into the dying socket (its output never came back as an item)
    is queued again, from its recorded decision, for the new session."""
    c = controller
    replayed = [e["item"] for e in events]
    calls = {i["call_id"] for i in replayed if i["type"] == "function_call"}
    done = {i["call_id"] for i in replayed if i["type"] == "function_call_output"}
    done |= {tool_call_id for tool_call_id, _ in c._pending_outputs}
    done |= {e["item"].get("call_id") for e in parked.items}
    for tool_call_id, decision_id in list(c.recorder._output_anchor.items()):
        if tool_call_id in done or tool_call_id not in calls or tool_call_id in c._cancelled_tool_calls:
            continue
        try:
            decision = await c.history.get_item(c.call_id, decision_id)
        except RedisError as exc:
            c.log.error("call.answer_not_requeued", tool_call_id=tool_call_id, error=_short(exc))
            continue
        if decision is not None and decision.text:
            c.log.info("call.answer_requeued", tool_call_id=tool_call_id, decision_id=decision_id)
            c._pending_outputs.append((tool_call_id, decision.text))


async def _settle_cut_off_item(controller: CallController) -> None:
    """The assistant item that was being said when the socket dropped never got its
    transcript: record it as interrupted with what the caller heard of it."""
    c, item_id = controller, controller.playback.current_item
    if item_id is None or item_id in c.recorder.interrupted or item_id in c.recorder.out_of_band:
        return
    try:
        item = await c.history.get_item(c.call_id, item_id)
        if item is None or item.kind != "message" or item.status != "in_progress":
            return
        await c.recorder.interrupted_at(
            item_id,
            c.playback.heard_ms(item_id),
            c.playback.heard_text(item_id),
            c.playback.full_text(item_id),
        )
    except RedisError as exc:
        c.log.error("call.cut_off_item_not_recorded", item_id=item_id, error=_short(exc))


# -- the call's Realtime side, across drops ------------------------------------------------------
async def run_realtime_call(
    opener: Opener,
    attach: Callable[[RealtimeConnection], CallController],
    session: dict[str, Any],
    *,
    caller_connected: Callable[[], bool],
    log: FilteringBoundLogger,
) -> None:
    """Run the call on Realtime sessions from ``opener`` until it ends; the controller is closed
    on the way out. Raises when the first session cannot be opened (nothing to resume) and
    :class:`RealtimeReconnectFailed` when a dropped one cannot be replaced."""
    controller: CallController | None = None
    try:
        try:
            async with opener() as rt:
                controller = attach(rt)
                await controller.start(session)
                await controller.pump()
        except Exception as exc:
            if controller is None:
                raise
            log.warning("call.realtime_dropped", error=_short(exc))
        drops = 0
        while not controller.closed and caller_connected():
            drops += 1
            if drops > MAX_DROPS_PER_CALL:
                log.error("call.realtime_reconnect_failed", reason="too many drops", drops=drops - 1)
                metrics.REALTIME_RECONNECTS.labels(outcome="failed").inc()
                raise RealtimeReconnectFailed(f"the Realtime socket dropped {drops - 1} times")
            await _reconnect_and_run(controller, opener, session, caller_connected, log, drops)
    finally:
        if controller is not None:
            await controller.close()


async def _reconnect_and_run(
    controller: CallController,
    opener: Opener,
    session: dict[str, Any],
    caller_connected: Callable[[], bool],
    log: FilteringBoundLogger,
    drop: int,
) -> None:
    """Park the call, open a new session (bounded attempts) and run it until it ends too."""
    parked = ParkedConnection(controller.call_id, _b64_chars(controller, AUDIO_BUFFER_MS))
    controller.rt = parked
    dropped_at = time.monotonic()
    log.info("call.realtime_reconnecting", drop=drop, attempts=len(RECONNECT_BACKOFF_S))
    error: Exception | None = None
    for attempt, delay in enumerate(RECONNECT_BACKOFF_S, start=1):
        await asyncio.sleep(delay)
        if controller.closed or not caller_connected():
            return
        resumed = False
        try:
            async with opener() as rt:
                if controller.closed:  # the caller hung up while the socket was opening
                    return
                replayed = await controller.resume(rt, session)
                resumed = True
                log.info(
                    "call.realtime_reconnected", attempt=attempt, drop=drop, replayed_items=replayed,
                    gap_ms=round((time.monotonic() - dropped_at) * 1000, 1),
                    audio_sent_ms=_b64_ms(controller, sum(len(a) for a in parked.audio)),
                    audio_dropped_ms=_b64_ms(controller, parked.audio_dropped_chars),
                )  # fmt: skip
                metrics.REALTIME_RECONNECTS.labels(outcome="reconnected").inc()
                await controller.pump()
            return
        except Exception as exc:
            if resumed:  # the new session dropped too: the caller decides whether to go again
                log.warning("call.realtime_dropped", error=_short(exc))
                return
            error = exc
            controller.rt = parked  # resume may have attached the failed session
            log.warning("call.realtime_reconnect_attempt_failed", attempt=attempt, error=_short(exc))
            metrics.REALTIME_RECONNECTS.labels(outcome="attempt_failed").inc()
    log.error("call.realtime_reconnect_failed", attempts=len(RECONNECT_BACKOFF_S), error=_short(error))
    metrics.REALTIME_RECONNECTS.labels(outcome="failed").inc()
    raise RealtimeReconnectFailed(f"no new Realtime session after {len(RECONNECT_BACKOFF_S)} attempts")
