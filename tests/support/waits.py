"""Waiting for asynchronous outcomes in tests: one helper, bounded, polling."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any


async def wait_until(
    predicate: Callable[[], object],
    timeout_s: float = 5.0,
    interval_s: float = 0.01,
    *,
    what: str = "",
    in_thread: bool = False,
) -> Any:
    """Return ``predicate()``'s first truthy value; fail the test (TimeoutError) after ``timeout_s``.

    ``predicate`` may be a coroutine function (its result is awaited), or, with ``in_thread``,
    a blocking call (selenium) that runs in a thread so that the service on this loop goes on.
    ``what`` names the condition in the failure.
    """
    deadline = asyncio.timeout(timeout_s)
    try:
        async with deadline:
            while True:
                value = await asyncio.to_thread(predicate) if in_thread else predicate()
                if inspect.isawaitable(value):
                    value = await value
                if value:
                    return value
                await asyncio.sleep(interval_s)
    except TimeoutError:
        if deadline.expired():
            raise TimeoutError(f"not within {timeout_s} s: {what or 'the awaited condition'}") from None
        raise
