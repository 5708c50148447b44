"""How late the event loop runs: every call's audio waits for it.

A task asks to wake every :data:`INTERVAL_S` and measures how much later than asked it woke.
That lateness is the time some other callback held the loop (a long parse, a synchronous
write, a GC pause) plus the queue of ready callbacks ahead of it, which is what each relayed
frame waits as well. It goes into ``responder_event_loop_lag_seconds``; a lag over
:data:`STALL_S` is also logged (``app.event_loop_stalled``, within a log budget).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Final

import structlog
from aiohttp import web
from prometheus_client import Histogram

from infra.logs import LogBudget
from infra.metrics import REGISTRY

INTERVAL_S: Final = 0.05
STALL_S: Final = 0.1

EVENT_LOOP_LAG = Histogram(
    "responder_event_loop_lag_seconds", "How much later than asked a timer on the event loop ran",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)  # fmt: skip

log = structlog.get_logger("app")


async def watch_loop(interval_s: float = INTERVAL_S, stall_s: float = STALL_S) -> None:
    """Sample the loop's lateness until cancelled."""
    loop = asyncio.get_running_loop()
    stalls = LogBudget(burst=5, per_s=0.1)
    while True:
        asked = loop.time() + interval_s
        await asyncio.sleep(interval_s)
        lag = max(0.0, loop.time() - asked)
        EVENT_LOOP_LAG.observe(lag)
        if lag >= stall_s and (suppressed := stalls.let_through()) is not None:
            log.warning("app.event_loop_stalled", lag_ms=round(lag * 1000, 1), suppressed=suppressed)


async def loop_monitor(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup context: the watcher runs while the app does."""
    task = asyncio.create_task(watch_loop(), name="loop-monitor")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
