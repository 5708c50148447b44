"""Graceful drain on SIGTERM.

1. ``/readyz`` answers 503 at once, so load balancers stop sending calls here, and admission
   refuses new calls politely in each transport's terms (a TwiML message for Twilio, SIP 486,
   HTTP 429 for browsers).
2. Calls in progress go on, for up to ``drain_s`` in all.
3. ``goodbye_s`` before that limit, every call still live says :data:`DRAIN_LINE` (after
   what it is saying now, bounded), is hung up like ``end_call`` and recorded as an
   ``end_call`` action with reason ``service_draining``.
4. The process exits when the last call has ended, or at the limit.

A second SIGTERM (or SIGINT) exits at once.
"""

from __future__ import annotations

import asyncio
import signal

import structlog
from aiohttp import web

from responder.core.actions import DRAIN_LINE, SERVICE_DRAINING
from responder.runtime.services import SERVICES, Services

log = structlog.get_logger("app")

POLL_S = 0.2


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
    goodbye_s = min(goodbye_s, drain_s)
    active = services.admission.active_total
    log.warning("app.draining", drain_s=drain_s, goodbye_s=goodbye_s, active_calls=active)
    await _until_no_calls(services, deadline - goodbye_s)
    ended = 0
    if services.admission.active_total:
        live = [c for c in list(services.live_controllers) if not c.closed]
        ended = len(live)
        log.warning("app.drain_goodbye", calls=ended, call_ids=[c.call_id for c in live])
        for controller in live:
            services.spawn_call(
                controller.end_with_line(SERVICE_DRAINING, DRAIN_LINE, max(1.0, goodbye_s - 0.5)),
                f"drain-goodbye:{controller.call_id}",
            )
        await _until_no_calls(services, deadline)
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
