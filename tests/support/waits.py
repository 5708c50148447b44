"""Waiting for asynchronous outcomes in tests: one helper, bounded, polling."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def wait_until(
    predicate: Callable[[], object], timeout_s: float = 5.0, interval_s: float = 0.01
) -> None:
    """Return once ``predicate()`` is truthy; fail the test (TimeoutError) after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(interval_s)
