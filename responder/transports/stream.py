"""What every transport that carries a call's audio over a WebSocket shares.

Twilio Media Streams (:mod:`responder.transports.twilio.transport`) and our own PCM16 WebSocket
(:mod:`responder.transports.websocket`) differ only in how frames look. Both:

* read frames in one loop and hand each to a handler from a dispatch table; a bad frame is
  logged (``<transport>.frame_invalid``) and skipped, never fatal; repeated ones are logged
  within a per-connection budget, the rest counted in one ``stream.invalid_frames_suppressed``;
* close a socket that does not identify its call within :data:`START_TIMEOUT_S`;
* close a socket that sends more than ``RESPONDER_STREAM_MAX_FRAMES_PER_S`` frames a second
  for :data:`FLOOD_WINDOWS` windows of a second running (``stream.frame_flood``): every frame
  costs the event loop a little whatever it carries, and a flood of tiny ones (150,000 in 2 s)
  held it 85-245 ms late for every call. The count is the one the idle check keeps, read once
  a second: nothing is added per frame. One window over it (a backlog after a network stall)
  is let through;
* once the call is identified, record it in the history and run it
  (:func:`responder.transports.runner.run_call`) on engine sessions in their audio format;
* keep the key presses that come while the call's first session is being set up, and hand
  them to its recorder, in order and with their arrival times, once it is attached;
* end the call, whatever state its setup is in, when the caller side goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import structlog
from aiohttp import WSMsgType, web
from redis.exceptions import RedisError

from infra.logs import LogBudget
from responder.core.actions import CallActions
from responder.core.controller import CallController, CallerLink, ControllerConfig
from responder.core.end_reason import CALLER_IDLE, caller_gone_reason
from responder.core.engine import EngineName
from responder.core.keypad import EARLY_KEYS_MAX
from responder.core.recorder import TranscriptRecorder
from responder.runtime.services import Services
from responder.transports.frame_queue import ENDED, frame_queue, receive
from responder.transports.runner import run_call, stream_opener

START_TIMEOUT_S = 10.0
_UNSTARTED_LOGGED = LogBudget(burst=20, per_s=1.0)  # sockets closed for want of a start, all transports
MAX_FRAME_BYTES = 64 * 1024
MAX_MSG_SIZE = MAX_FRAME_BYTES + 1  # aiohttp closes (1009) on a message of max_msg_size bytes or more
UNKNOWN_CALL = "unknown"
EARLY_KEYS_WRITE_S = 2.0  # a call whose session never came: its key presses are written still
FLOOD_WINDOW_S = 1.0
FLOOD_WINDOWS = 2  # windows over the frame rate in a row that close the socket
FLOOD_CLOSE_S = 0.25  # how long a flooding client's close frame is waited for

FrameHandler = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class LogNames:
    """The stable event names a transport logs under (``twilio.frame_invalid`` …)."""

    frame_invalid: str
    frame_failed: str
    event_ignored: str
    stream_rejected: str

    @classmethod
    def of(cls, transport: str) -> LogNames:
        return cls(
            frame_invalid=transport + ".frame_invalid",
            frame_failed=transport + ".frame_failed",
            event_ignored=transport + ".event_ignored",
            stream_rejected=transport + ".stream_rejected",
        )


class StreamCall:
    """One caller-side WebSocket driving one call. Subclasses fill ``handlers`` and call
    :meth:`begin` once they know which call the socket carries."""

    transport: ClassVar[str]
    type_key: ClassVar[str]  # the JSON field naming a text frame's type
    audio_format: ClassVar[dict[str, Any]]
    names: ClassVar[LogNames]

    def __init__(self, ws: web.WebSocketResponse, services: Services) -> None:
        self.ws = ws
        self.services = services
        self.controller: CallController | None = None
        self.call_id = UNKNOWN_CALL
        self.log = structlog.get_logger(self.transport)
        self.handlers: dict[str, FrameHandler] = {}
        self.invalid_frames = LogBudget()  # what this connection's bad frames may log
        self.engine: EngineName = services.settings.engine  # a transport may choose per call
        self._run_task: asyncio.Task[None] | None = None
        self.frames = 0  # frames received (the idle watchdog's clock)
        self._idle_closed = False  # the idle watchdog closed the socket
        self._declined: str | None = None  # a frame _take_now offered to on_text_now, in vain
        self._early_keys: list[tuple[str, float]] = []  # (digit, arrival) before the controller
        self._early_overflow = 0  # presses past EARLY_KEYS_MAX before it

    # -- the frame loop ------------------------------------------------------------------
    async def serve(self) -> None:
        watchdog = asyncio.create_task(self._require_start())
        idle_s = self.idle_timeout_s()
        idle = asyncio.create_task(self._close_when_idle(idle_s)) if idle_s is not None else None
        settings = self.services.settings  # simulated callers send audio ``simulator_speed`` times as fast
        max_frames_per_s = settings.stream_max_frames_per_s * max(1.0, settings.simulator_speed)
        flood = asyncio.create_task(self._close_when_flooding(max_frames_per_s))
        queue = frame_queue(self.ws)
        if queue is not None:
            queue.take = self._take_now
        try:
            while True:
                msg = await receive(self.ws, queue)
                if msg.type in ENDED:
                    break
                self.frames += 1
                if msg.type == WSMsgType.TEXT:
                    if msg.data is self._declined:  # _take_now's on_text_now said no already
                        self._declined = None
                        await self.on_text(msg.data)
                    elif not self.on_text_now(msg.data):
                        await self.on_text(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await self.on_binary(msg.data)
                elif msg.type == WSMsgType.ERROR:
                    break
                if self.controller is not None and self.controller.closed:
                    break
        finally:
            if queue is not None:
                queue.take = None
            watchdog.cancel()
            flood.cancel()
            if idle is not None:
                idle.cancel()
            if suppressed := self.invalid_frames.take_suppressed():
                self.log.warning(
                    "stream.invalid_frames_suppressed", transport=self.transport, count=suppressed
                )
            await self._finish()

    def _take_now(self, data: str) -> bool:
        """A text frame offered as it is parsed (:mod:`responder.transports.frame_queue`), the
        serve loop parked with every earlier frame handled: True when :meth:`on_text_now`
        handled it, counted as the loop would; False to let the loop read it as usual."""
        controller = self.controller
        if controller is None or controller.closed or self.ws.closed:
            return False  # the loop reads it, and ends when the call or the socket has
        try:
            if not self.on_text_now(data):
                self._declined = data  # the next frame the loop reads: not tried twice
                return False
        except Exception as exc:  # inside aiohttp's read callback: nothing may escape to it
            self.log.error(self.names.frame_failed, frame_type="text", error=repr(exc)[:200])
        self.frames += 1
        return True

    def on_text_now(self, data: str) -> bool:
        """A transport's hot path without a coroutine (Twilio's media frames): True when the
        frame was handled, False to hand it to :meth:`on_text`."""
        return False

    async def on_binary(self, data: bytes) -> None:
        if self.invalid_frames.allow():
            self.log.warning(self.names.frame_invalid, reason="non-text frame")

    async def on_text(self, data: str) -> None:
        try:
            frame = json.loads(data)
            kind = frame[self.type_key]
            if not isinstance(kind, str):
                raise TypeError("frame type is not a string")
        except (ValueError, KeyError, TypeError, RecursionError):
            if self.invalid_frames.allow():
                self.log.warning(self.names.frame_invalid, reason="not a control frame", sample=data[:80])
            return
        await self.dispatch(kind, frame)

    async def dispatch(self, kind: str, frame: dict[str, Any]) -> None:
        handler = self.handlers.get(kind)
        if handler is None:
            if self.invalid_frames.allow():
                self.log.info(self.names.event_ignored, frame_type=kind[:40])
            return
        try:
            await handler(frame)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            if self.invalid_frames.allow():
                self.log.warning(self.names.frame_invalid, frame_type=kind, reason=repr(exc)[:200])
        except Exception as exc:  # a Redis or socket hiccup must not end the caller's call
            self.log.error(self.names.frame_failed, frame_type=kind, error=repr(exc))

    @property
    def started(self) -> bool:
        return self.call_id != UNKNOWN_CALL

    def start_timeout_s(self) -> float:
        return START_TIMEOUT_S

    def idle_timeout_s(self) -> float | None:
        """A socket with no frame for this long is closed (None: the WebSocket ping decides)."""
        return None

    async def _close_when_idle(self, idle_s: float) -> None:
        """Looks four times per ``idle_s``: closed within 1.25 × ``idle_s`` of the last frame."""
        loop = asyncio.get_running_loop()
        seen, quiet_since = self.frames, loop.time()
        while not self.ws.closed:
            await asyncio.sleep(idle_s / 4)
            if self.frames != seen:
                seen, quiet_since = self.frames, loop.time()
            elif loop.time() - quiet_since >= idle_s and not self.ws.closed:
                self.log.warning("stream.idle_closed", transport=self.transport, idle_s=idle_s)
                self._idle_closed = True  # _finish ends the call as idle, not as a dropped socket
                if self.started:  # the protocol's last frame, where it has one
                    await self.call_over(CALLER_IDLE)
                await self.ws.close(code=1001, message=b"no frames")
                return

    async def _close_when_flooding(self, max_per_s: float) -> None:
        seen, over = self.frames, 0
        while not self.ws.closed:
            await asyncio.sleep(FLOOD_WINDOW_S)
            count, seen = self.frames - seen, self.frames
            over = over + 1 if count > max_per_s * FLOOD_WINDOW_S else 0
            if over >= FLOOD_WINDOWS and not self.ws.closed:
                self.log.warning(
                    "stream.frame_flood", transport=self.transport, frames_per_s=round(count / FLOOD_WINDOW_S)
                )
                # not the usual wait for the client's close frame (10 s): the frames before
                # it would be read on meanwhile; past FLOOD_CLOSE_S the connection is dropped
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(FLOOD_CLOSE_S):
                        await self.ws.close(code=1008, message=b"too many frames")
                return

    async def _require_start(self) -> None:
        """A socket that never identifies its call is closed instead of being kept alive."""
        await asyncio.sleep(self.start_timeout_s())
        if not self.started and not self.ws.closed:
            if (suppressed := _UNSTARTED_LOGGED.let_through()) is not None:  # anyone can say nothing
                self.log.warning(self.names.stream_rejected, reason="no start in time", suppressed=suppressed)
            await self.ws.close(code=1008, message=b"start expected")

    # -- the call ------------------------------------------------------------------------
    async def begin(self, call_id: str, link: CallerLink, **meta: str) -> None:
        """The socket carries ``call_id``: record the call and run it."""
        self.call_id = call_id
        self.log = self.log.bind(call_id=call_id)
        await self.services.history.start_call(call_id, transport=self.transport, engine=self.engine, **meta)
        self.log.info("call.started", transport=self.transport, engine=self.engine)
        self._run_task = asyncio.create_task(self._run_call(link))

    def controller_config(self) -> ControllerConfig:
        return self.services.controller_config()

    def call_actions(self) -> CallActions | None:
        """How ``escalate_to_human``/``end_call`` act on this transport; None: closing the call."""
        return None

    async def caller_dtmf(self, digit: str) -> None:
        """A key press of the caller: to the call's recorder, or kept until it exists. One
        before the socket has named (and, on Twilio, authenticated) its call belongs to no call:
        it is dropped, within the connection's log budget."""
        if self.controller is not None:
            await self.controller.caller_dtmf(digit)
        elif not self.started:
            if self.invalid_frames.allow():
                self.log.warning(self.names.frame_invalid, frame_type="dtmf", reason="before start")
        elif len(self._early_keys) < EARLY_KEYS_MAX:
            self._early_keys.append((digit, time.monotonic()))
        else:
            self._early_overflow += 1

    def _attached(self, controller: CallController) -> None:
        self.controller = controller
        early, self._early_keys = self._early_keys, []
        for digit, arrived in early:  # before the session's first event: in order, first
            controller.recorder.key_press(digit, arrived)
        if self._early_overflow:
            controller.recorder.keys_refused(self._early_overflow, "early_overflow")
            self._early_overflow = 0

    async def _run_call(self, caller: CallerLink) -> None:
        services = self.services
        config = self.controller_config()
        opener = stream_opener(
            services, self.call_id, self.engine, self.audio_format, config.bytes_per_ms, self.log
        )
        try:  # a dropped engine session is replaced while the caller is there (core/sessions.py)
            run = await run_call(
                services, self.call_id, opener, caller, config, actions=self.call_actions(), log=self.log,
                caller_connected=lambda: not self.ws.closed, reconnect=True, on_attach=self._attached,
            )  # fmt: skip
            if run.error is not None:
                await self.call_over("realtime_failed")
        finally:
            await self.call_over("call_ended")
            if not self.ws.closed:
                await self.ws.close()

    async def call_over(self, reason: str) -> None:
        """The call is over on the service side (first reason wins); tell the caller if the
        protocol has a way to. Twilio has none: closing the socket says it."""

    async def _record_early_keys(self) -> None:
        config = self.controller_config()
        recorder = TranscriptRecorder(
            self.call_id, self.services.history, self.log, config.dtmf_rate_per_s, config.dtmf_burst
        )
        for digit, arrived in self._early_keys:
            recorder.key_press(digit, arrived)
        if self._early_overflow:
            recorder.keys_refused(self._early_overflow, "early_overflow")
        self._early_keys, self._early_overflow = [], 0
        await recorder.lane.aclose(EARLY_KEYS_WRITE_S)

    async def _record_open(self) -> bool:
        """Whether the call's record still says active; unreadable (Redis down and nothing of
        the call buffered) counts as open, so that its end is written (buffered) anyway."""
        try:
            return (await self.services.history.get_meta(self.call_id)).get("status") == "active"
        except RedisError as exc:
            self.log.warning("call.record_unreadable", error=repr(exc))
            return True

    async def _finish(self) -> None:
        """The caller side is gone: end the call, whatever state its setup is in."""
        if self._run_task is None:
            return
        # unless a stop came first; a socket closed for its silence is not one that dropped
        reason = CALLER_IDLE if self._idle_closed else caller_gone_reason(stopping=self.services.stopping)
        if self.controller is None:
            self._run_task.cancel()  # the caller left before the model session was ready
        else:
            await self.controller.close(reason)
        try:
            await asyncio.wait_for(self._run_task, 5)
        except (TimeoutError, asyncio.CancelledError):
            self._run_task.cancel()
        if self.controller is not None:
            await self.controller.close(reason)  # idempotent; covers a controller created meanwhile
            return
        if self._early_keys or self._early_overflow:  # the session never came: record them now
            await self._record_early_keys()
        if await self._record_open():
            await self.services.history.set_meta(
                self.call_id, status="ended", ended_at=time.time(), end_reason=reason
            )
