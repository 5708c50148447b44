"""One way to run a call, whatever its transport: the controller over engine sessions.

Audio-carrying WebSockets (:mod:`responder.transports.stream`: Twilio Media Streams and the
PCM16 WebSocket) and sidebands (:mod:`responder.transports.sideband`: SIP and WebRTC) differ in
where the audio flows and how a call ends on their side; what happens between a call's first
engine session and its end is the same, and is here: build the one
:class:`~responder.core.controller.CallController`, register it (a drain says goodbye
through it), run its sessions (a dropped one is replaced when the transport can keep the
caller meanwhile), and record a call whose first session never came up as ``failed``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from structlog.typing import FilteringBoundLogger

from responder.core.actions import CallActions
from responder.core.contract import CallerLink, ControllerConfig
from responder.core.controller import CallController
from responder.core.engine import Engine, EngineName
from responder.core.sessions import Opener, run_sessions
from responder.engines.live.connect import open_live_engine, open_live_sideband
from responder.engines.live.session import build_live_session
from responder.engines.realtime.engine import open_engine
from responder.engines.realtime.session import build_session
from responder.runtime.services import Services


@dataclass
class CallRun:
    """How a call's run ended: its controller (None: the first session never came up) and
    the failure, if it ended by one."""

    controller: CallController | None
    error: Exception | None = None


def realtime_opener(
    services: Services, call_id: str, session: dict[str, Any], log: FilteringBoundLogger, *,
    sideband: bool = False,
) -> Opener:  # fmt: skip
    """New Realtime sessions for ``call_id`` (a sideband attaches to the call OpenAI carries)."""
    client, model = services.realtime_client, services.settings.realtime_model
    if sideband:
        return lambda: open_engine(client, call_id, session, log, sideband_call_id=call_id)
    return lambda: open_engine(client, call_id, session, log, model=model)


def sideband_opener(
    services: Services, call_id: str, engine: EngineName, session: dict[str, Any], log: FilteringBoundLogger
) -> Opener:
    """The sideband of a call OpenAI carries: Realtime (``rtc_…``) or GPT-Live (``live_…``)."""
    if engine == "live":
        recovery_s = services.settings.live_recovery_s
        running = services.settings.live_max_running_handovers
        return lambda: open_live_sideband(services.realtime_client, call_id, log, recovery_s=recovery_s,
                                          max_running=running)  # fmt: skip
    return realtime_opener(services, call_id, session, log, sideband=True)


def stream_opener(
    services: Services, call_id: str, engine: EngineName, audio_format: dict[str, Any],
    bytes_per_ms: float, log: FilteringBoundLogger,
) -> Opener:  # fmt: skip
    """New sessions of ``engine`` for a call whose audio passes through us in ``audio_format``."""
    settings = services.settings
    if engine == "live":
        session = build_live_session(settings, audio_format=audio_format)
        return lambda: open_live_engine(
            services.realtime_client, call_id, session, log, bytes_per_ms=bytes_per_ms,
            recovery_s=settings.live_recovery_s, start_timeout_s=settings.live_session_start_timeout_s,
            max_running=settings.live_max_running_handovers,
        )  # fmt: skip
    return realtime_opener(services, call_id, build_session(settings, audio_format=audio_format), log)


async def run_call(
    services: Services,
    call_id: str,
    opener: Opener,
    caller: CallerLink,
    config: ControllerConfig,
    *,
    actions: CallActions | None,
    log: FilteringBoundLogger,
    caller_connected: Callable[[], bool],
    reconnect: bool,
    on_attach: Callable[[CallController], None] | None = None,
) -> CallRun:
    """Run ``call_id`` until it ends; never raises for the call's own failures."""
    run = CallRun(None)

    def attach(engine: Engine) -> CallController:
        run.controller = CallController(
            call_id, engine, caller, services.history, services.decide, config, actions
        )
        services.live_controllers.add(run.controller)
        if on_attach is not None:
            on_attach(run.controller)
        return run.controller

    try:
        await run_sessions(opener, attach, caller_connected=caller_connected, log=log, reconnect=reconnect)
    except Exception as exc:
        log.error("call.realtime_failed", error=repr(exc))
        run.error = exc
        if run.controller is None:
            try:
                await services.history.set_meta(
                    call_id, status="failed", ended_at=time.time(), error=type(exc).__name__
                )
            except Exception as redis_exc:
                log.error("call.end_not_recorded", error=repr(redis_exc))
    return run
