"""Event bursts handled in short loop steps, so that one call's backlog does not hold the others.

A call's engine socket can hold many events at once (a reply's first few hundred milliseconds of
audio arrive faster than real time, or a stalled process catches up): reading them does not
suspend, so the call's pump would handle the whole backlog in one step of the event loop while
every other call's frames wait, a caller's barge-in among them (its ``clear`` goes out late).
:func:`in_short_steps` passes the events on unchanged and, once it has gone on for
:data:`STEP_S` without suspending, yields to the loop once before the next event.

Whether the source suspended is told from the wall clock: a wait for the next event longer than
:data:`WAITED_S` is taken as one (the step began there). Nothing else is added per event: two
``perf_counter`` reads; in steady traffic (one event per read) it never yields.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Final, TypeVar

STEP_S: Final = 0.0005  # the longest run of back-to-back events before the loop gets a turn
WAITED_S: Final = 0.0002  # a wait this long for the next event means the reader was suspended

T = TypeVar("T")


async def in_short_steps(events: AsyncIterator[T], step_s: float = STEP_S) -> AsyncIterator[T]:
    """``events``, yielding to the event loop between them whenever a burst outlasts ``step_s``."""
    clock = time.perf_counter
    step_started = clock()
    while True:
        asked = clock()
        try:
            event = await anext(events)
        except StopAsyncIteration:
            return
        now = clock()
        if now - asked > WAITED_S:
            step_started = now  # the reader waited: a new loop step began
        elif now - step_started > step_s:
            await asyncio.sleep(0)  # the others' frames first, then the rest of the burst
            step_started = clock()
        yield event
