"""A burst of queued engine events is handled in short loop steps (responder/core/short_steps.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from responder.core import short_steps
from responder.core.short_steps import in_short_steps


async def _backlog(n: int) -> AsyncIterator[int]:
    """``n`` events already queued: none of them suspends the reader."""
    for i in range(n):
        yield i


def _busy(seconds: float) -> None:
    """Handle an event: this much CPU on the loop."""
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


async def _handled_before_the_other_call(events: AsyncIterator[int]) -> tuple[list[int], int]:
    """Handle ``events`` (0.1 ms each) while another call waits for the loop; how many were
    handled before it got its turn."""
    handled: list[int] = []
    other = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(lambda: other.set_result(len(handled)))
    async for event in events:
        _busy(0.0001)
        handled.append(event)
    return handled, await other


async def test_a_backlog_gives_the_loop_a_turn_every_half_millisecond() -> None:
    handled, before_other = await _handled_before_the_other_call(in_short_steps(_backlog(200)))
    assert handled == list(range(200))  # every event, in order
    assert 1 <= before_other <= 10  # ≈ 0.5 ms of events, not the whole 20 ms backlog
    plain, plain_before_other = await _handled_before_the_other_call(_backlog(200))
    assert plain == handled and plain_before_other == 200  # without it: the whole backlog first


async def test_events_that_arrive_one_by_one_are_never_delayed(monkeypatch: pytest.MonkeyPatch) -> None:
    yields: list[float] = []
    real_sleep = asyncio.sleep

    async def counted_sleep(delay: float) -> None:
        yields.append(delay)
        await real_sleep(delay)

    async def paced(n: int) -> AsyncIterator[int]:
        for i in range(n):
            await real_sleep(0.001)  # the reader waits for every event: each is its own loop step
            yield i

    monkeypatch.setattr(short_steps.asyncio, "sleep", counted_sleep)
    got = [event async for event in in_short_steps(paced(30))]
    assert got == list(range(30)) and yields == []
