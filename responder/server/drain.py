"""Graceful drain on SIGTERM.

1. ``/readyz`` answers 503 at once, so load balancers stop sending calls here, and admission
   refuses new calls politely in each transport's terms (a TwiML message for Twilio, SIP 486,
   HTTP 429 for browsers).
2. Calls in progress go on, for up to ``drain_s`` in all.
3. ``goodbye_s`` before that limit, every call still live says :data:`DRAIN_LINE` (after
   what it is saying now, bounded), is hung up like ``end_call`` and recorded as an
   ``end_call`` action with reason ``service_draining``. The whole goodbye has what is left
   of the drain less :data:`END_MARGIN_S` (for the hang-up, its record, the call's end): the
   wait for the line to be heard ends with that budget, whether or not the caller's side
   ever acknowledges the audio (a player that echoes no marks).
4. At the limit, a call still open is closed (``service_shutdown``), and the process exits.
   Its shutdown (connections, supervisor runs that outlived their call, buffered history
   writes) has :data:`SHUTDOWN_MARGIN_S` past the limit (:attr:`Services.exit_by`): a stop
   grace period of ``drain_s`` + that margin, and some room, is never overrun.

A second SIGTERM (or SIGINT) exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

import structlog
from aiohttp import web

from responder.core.actions import DRAIN_LINE, SERVICE_DRAINING
from responder.core.end_reason import SERVICE_SHUTDOWN
from responder.runtime.services import SERVICES, Services

log = structlog.get_logger("app")

POLL_S = 0.2
END_MARGIN_S = 1.0  # of the goodbye's budget: the hang-up, its record and the call's end
SHUTDOWN_MARGIN_S = 3.0  # past the drain limit: the process has exited by then
CLOSE_AT_LIMIT_S = 1.0  # calls still open at the limit: how long their closing may take
HANDLERS_AT_EXIT_S = 1.0  # requests still running at exit (aiohttp's shutdown_timeout), then cancelled


def drain_on_sigterm(app: web.Application, drain_s: float, goodbye_s: float) -> None:
    drain_tasks: set[asyncio.Task[None]] = set()  # a reference, so that the task is not collected

    async def install(app: web.Application) -> None:
        loop = asyncio.get_running_loop()

        def on_sigterm() -> None:
            services = app.get(SERVICES)
            if services is None or services.draining:
                raise web.GracefulExit()
            drain_tasks.add(asyncio.ensure_future(drain(services, drain_s, goodbye_s, exit_after=True)))

        loop.add_signal_handler(signal.SIGTERM, on_sigterm)

    app.on_startup.append(install)


async def drain(services: Services, drain_s: float, goodbye_s: float, *, exit_after: bool = False) -> int:
    """Drain this instance; returns how many calls were ended with the goodbye line."""
    services.draining = True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + drain_s
    services.exit_by = deadline + SHUTDOWN_MARGIN_S
    goodbye_s = min(goodbye_s, drain_s)
    active = services.admission.active_total
    log.warning("app.draining", drain_s=drain_s, goodbye_s=goodbye_s, active_calls=active)
    await _until_no_calls(services, deadline - goodbye_s)
    ended = 0
    if services.admission.active_total:
        live = [c for c in list(services.live_controllers) if not c.closed]
        ended = len(live)
        log.warning("app.drain_goodbye", calls=ended, call_ids=[c.call_id for c in live])
        within_s = max(0.5, deadline - loop.time() - END_MARGIN_S)
        for controller in live:
            services.spawn_call(
                controller.end_with_line(SERVICE_DRAINING, DRAIN_LINE, within_s),
                f"drain-goodbye:{controller.call_id}",
            )
        await _until_no_calls(services, deadline)
    if services.admission.active_total:  # at the limit: nothing is left to wait for
        late = [c for c in list(services.live_controllers) if not c.closed]
        closing = asyncio.gather(*(c.close(SERVICE_SHUTDOWN) for c in late), return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(closing), CLOSE_AT_LIMIT_S)
        await _until_no_calls(services, loop.time() + CLOSE_AT_LIMIT_S)
    log.warning("app.drained", active_calls=services.admission.active_total, said_goodbye=ended)
    if exit_after:
        loop.call_soon(_graceful_exit)
    return ended


async def _until_no_calls(services: Services, until: float) -> None:
    loop = asyncio.get_running_loop()
    while True:  # admission counts the calls of every transport; nothing to wait on but it
        left = until - loop.time()
        if not services.admission.active_total or left <= 0:
            return
        await asyncio.sleep(min(POLL_S, left))


def _graceful_exit() -> None:
    raise web.GracefulExit()  # raised from a loop callback: ends run_app, which then cleans up
