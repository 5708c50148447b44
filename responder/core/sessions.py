"""A call's engine sessions, one after another: a dropped session does not end the call.

:func:`run_sessions` runs the first session; when its socket closes or fails while the caller
is still there and the service did not end the call, the call is *parked*
(:class:`~responder.core.parked.ParkedEngine` stands in, so that nothing the call does
meanwhile fails or is lost) and up to ``len(RECONNECT_BACKOFF_S)`` attempts open a new
session (after 0.25, 0.5 and 1 s), which the controller resumes
(:meth:`~responder.core.controller.CallController.resume`: history restored, what was due
asked for again). The call gives up (``call.realtime_reconnect_failed``; the transport ends it
as ``realtime_failed``) when every attempt fails, or after :data:`MAX_DROPS_PER_CALL` drops.

Caller audio while parked: the most recent :data:`AUDIO_BUFFER_MS` are kept and sent once the
new session has its history (older audio is dropped and counted in the
``call.realtime_reconnected`` log as ``audio_dropped_ms``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from structlog.typing import FilteringBoundLogger

from infra import metrics
from responder.core.controller import CallController
from responder.core.engine import Engine
from responder.core.parked import ParkedEngine
from responder.core.resume import short

RECONNECT_BACKOFF_S: tuple[float, ...] = (0.25, 0.5, 1.0)  # one attempt after each delay
MAX_DROPS_PER_CALL = 5
AUDIO_BUFFER_MS = 2000

Opener = Callable[[], AbstractAsyncContextManager[Engine]]


class ReconnectFailed(Exception):
    """The engine session could not be brought back: the call ends as ``realtime_failed``."""


def _b64_chars(controller: CallController, ms: int) -> int:
    return int(controller.config.bytes_per_ms * ms * 4 / 3)


def _b64_ms(controller: CallController, chars: int) -> int:
    return int(chars * 3 / 4 / controller.config.bytes_per_ms) if controller.config.bytes_per_ms else 0


async def run_sessions(
    opener: Opener,
    attach: Callable[[Engine], CallController],
    *,
    caller_connected: Callable[[], bool],
    log: FilteringBoundLogger,
    reconnect: bool = True,
) -> CallController | None:
    """Run the call on sessions from ``opener`` until it ends; the controller (made by
    ``attach`` for the first session) is closed on the way out. Raises when the first session
    cannot be opened (nothing to resume) and :class:`ReconnectFailed` when a dropped one
    cannot be replaced. Without ``reconnect`` a drop ends the call."""
    controller: CallController | None = None
    try:
        try:
            async with opener() as engine:
                controller = attach(engine)
                await controller.start()
                await controller.pump()
        except Exception as exc:
            if controller is None:
                raise
            log.warning("call.realtime_dropped", error=short(exc))
        drops = 0
        while reconnect and not controller.closed and caller_connected():
            drops += 1
            if drops > MAX_DROPS_PER_CALL:
                log.error("call.realtime_reconnect_failed", reason="too many drops", drops=drops - 1)
                metrics.REALTIME_RECONNECTS.labels(outcome="failed").inc()
                raise ReconnectFailed(f"the engine session dropped {drops - 1} times")
            await _reconnect_and_run(controller, opener, caller_connected, log, drops)
    finally:
        if controller is not None:
            await controller.close()
    return controller


async def _reconnect_and_run(
    controller: CallController,
    opener: Opener,
    caller_connected: Callable[[], bool],
    log: FilteringBoundLogger,
    drop: int,
) -> None:
    """Park the call, open a new session (bounded attempts) and run it until it ends too."""
    parked = ParkedEngine(controller.call_id, _b64_chars(controller, AUDIO_BUFFER_MS), controller.engine.name)
    controller.park(parked)
    dropped_at = time.monotonic()
    log.info("call.realtime_reconnecting", drop=drop, attempts=len(RECONNECT_BACKOFF_S))
    error: Exception | None = None
    for attempt, delay in enumerate(RECONNECT_BACKOFF_S, start=1):
        await asyncio.sleep(delay)
        if controller.closed or not caller_connected():
            return
        resumed = False
        try:
            async with opener() as engine:
                if controller.closed:  # the caller hung up while the socket was opening
                    return
                replayed = await controller.resume(engine)
                resumed = True
                log.info(
                    "call.realtime_reconnected", attempt=attempt, drop=drop, replayed_items=replayed,
                    gap_ms=round((time.monotonic() - dropped_at) * 1000, 1),
                    audio_sent_ms=_b64_ms(controller, parked.audio_chars),
                    audio_dropped_ms=_b64_ms(controller, parked.audio_dropped_chars),
                )  # fmt: skip
                metrics.REALTIME_RECONNECTS.labels(outcome="reconnected").inc()
                await controller.pump()
            return
        except Exception as exc:
            if resumed:  # the new session dropped too: the caller decides whether to go again
                log.warning("call.realtime_dropped", error=short(exc))
                return
            error = exc
            controller.park(parked)  # resume may have attached the failed session
            log.warning("call.realtime_reconnect_attempt_failed", attempt=attempt, error=short(exc))
            metrics.REALTIME_RECONNECTS.labels(outcome="attempt_failed").inc()
    log.error("call.realtime_reconnect_failed", attempts=len(RECONNECT_BACKOFF_S), error=short(error))
    metrics.REALTIME_RECONNECTS.labels(outcome="failed").inc()
    raise ReconnectFailed(f"no new engine session after {len(RECONNECT_BACKOFF_S)} attempts")
