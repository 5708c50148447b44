"""The drain's goodbye fits its budget: a line that never finishes playing does not get its
wait twice (the watchdog's, then the line-heard wait again), so the call is hung up within
``within_s`` of the request and the process exits at the drain limit, not seconds later."""

from __future__ import annotations

import asyncio
import time

import structlog

from callrecord.history import CallHistory
from responder.core.action_runner import ActionRunner
from responder.core.actions import DRAIN_LINE, SERVICE_DRAINING
from responder.core.recorder import TranscriptRecorder


class _Host:
    """A call whose line never finishes playing (the caller's side stopped echoing marks)."""

    def __init__(self) -> None:
        self.closed = False

    async def until_silent(self) -> None:
        await asyncio.sleep(3600)

    async def close(self) -> None:
        self.closed = True


class _Actions:
    transport = "twilio"
    can_transfer = False

    def __init__(self) -> None:
        self.hung_up_at: float | None = None

    async def transfer(self) -> str:
        raise AssertionError("a drain never transfers")

    async def hang_up(self) -> None:
        self.hung_up_at = time.monotonic()


async def test_service_hang_up_happens_within_its_budget(history: CallHistory) -> None:
    log = structlog.get_logger("test").bind(call_id="CAbudget")
    actions = _Actions()
    runner = ActionRunner(
        "CAbudget", transport="twilio", actions=actions,  # type: ignore[arg-type]
        recorder=TranscriptRecorder("CAbudget", history, log), log=log,
    )  # fmt: skip
    assert runner.request_by_service(SERVICE_DRAINING, DRAIN_LINE) is not None
    host = _Host()
    started = time.monotonic()
    await asyncio.wait_for(runner.perform_later(host, 1.0), 10)
    assert actions.hung_up_at is not None and host.closed
    elapsed = actions.hung_up_at - started
    assert 0.9 <= elapsed < 1.6, elapsed  # the budget once (before: twice, ~2 s)
    [action] = [i for i in await history.get_items("CAbudget") if i.kind == "action"]
    assert action.meta["reason"] == SERVICE_DRAINING and action.meta["outcome"] == "done"


async def test_a_line_whose_reply_ends_late_does_not_restart_the_budget(history: CallHistory) -> None:
    """Issue 14, item 11: the goodbye line's reply ends (the controller calls ``perform``) with
    part of the budget spent; the wait for the line to be heard then got the whole budget again
    (marks that never come), so the call ended past the drain limit. It gets what is left."""
    log = structlog.get_logger("test").bind(call_id="CAlate")
    actions = _Actions()
    runner = ActionRunner(
        "CAlate", transport="twilio", actions=actions,  # type: ignore[arg-type]
        recorder=TranscriptRecorder("CAlate", history, log), log=log,
    )  # fmt: skip
    assert runner.request_by_service(SERVICE_DRAINING, DRAIN_LINE) is not None
    host = _Host()
    started = time.monotonic()
    watchdog = asyncio.create_task(runner.perform_later(host, 1.0))
    await asyncio.sleep(0.6)  # the line was said meanwhile; its reply ends now
    await asyncio.wait_for(runner.perform(host), 10)
    await asyncio.wait_for(watchdog, 10)
    assert actions.hung_up_at is not None and host.closed
    elapsed = actions.hung_up_at - started
    assert elapsed < 1.4, elapsed  # the budget once (before: 0.6 s + the whole budget again)
