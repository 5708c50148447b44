"""Waiting on a call history that buffers writes while Redis is down."""

from __future__ import annotations

from callrecord.history_buffer import BufferedCallHistory
from tests.support.waits import wait_until


async def drained(history: BufferedCallHistory, timeout_s: float = 30.0) -> None:
    """Until Redis is up and every buffered write has reached it."""
    await wait_until(lambda: not (history.pending or history.redis_down), timeout_s, 0.02, what="drained")
