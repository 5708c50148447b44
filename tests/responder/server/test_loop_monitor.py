"""responder/server/loop_monitor.py: a callback that holds the loop shows as lag."""

from __future__ import annotations

import asyncio
import contextlib
import time

from structlog.testing import capture_logs

from infra.metrics import REGISTRY
from responder.server.loop_monitor import watch_loop


def _lag_count(le: str) -> float:
    return REGISTRY.get_sample_value("responder_event_loop_lag_seconds_bucket", {"le": le}) or 0.0


async def test_a_blocked_loop_is_measured_and_logged() -> None:
    slow_before = _lag_count("+Inf") - _lag_count("0.1")
    with capture_logs() as logs:
        watcher = asyncio.create_task(watch_loop(interval_s=0.01, stall_s=0.1))
        await asyncio.sleep(0.05)  # a few quiet samples
        time.sleep(0.25)  # noqa: ASYNC251 - a callback that holds the loop: the point
        await asyncio.sleep(0.05)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    assert _lag_count("+Inf") - _lag_count("0.1") >= slow_before + 1  # the blocked sample
    stalls = [e["lag_ms"] for e in logs if e["event"] == "app.event_loop_stalled"]
    assert max(stalls) >= 200
