"""What every transport needs for a call, built once per process at startup."""

from __future__ import annotations

import asyncio
import secrets
import weakref
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web
from openai import AsyncOpenAI

from callrecord.history import CallHistory
from infra.redis_server import RedisHandle
from infra.settings import Settings
from responder.core.controller import CallController, ControllerConfig, DecideFn
from responder.runtime.admission import CallAdmission
from responder.runtime.handshake import PendingSockets, Reservations
from responder.runtime.view_token import view_token
from simulator.entry import SimulatorHandle


@dataclass
class Services:
    settings: Settings
    redis: RedisHandle
    history: CallHistory
    realtime_client: AsyncOpenAI
    decide: DecideFn
    admission: CallAdmission
    simulator_url: str | None = None
    simulator: SimulatorHandle | None = None  # keyless mode: the OpenAI API test double it runs
    twilio_client: Any = None  # twilio.rest.Client for call control; None without credentials
    call_tasks: set[asyncio.Task[Any]] = field(default_factory=set)  # sideband calls in flight
    # every call controller of this instance (what a drain says goodbye through)
    live_controllers: weakref.WeakSet[CallController] = field(default_factory=weakref.WeakSet)
    view_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    # media sockets before their stream token, and calls admitted at their webhook until then
    pending_sockets: PendingSockets = field(default_factory=lambda: PendingSockets(8, 256))
    reservations: Reservations = field(default_factory=Reservations)

    def view_token(self, call_id: str) -> str:
        """What lets the browser that started ``call_id`` watch its live transcript."""
        return view_token(self.view_secret, call_id)
    draining: bool = False  # set on SIGTERM: /readyz answers 503 so that no new calls arrive
    stopping: bool = False  # set at shutdown, before live connections are cut: their end reason
    exit_by: float | None = None  # loop time a drain's shutdown must be over by (server/drain.py)

    def shutdown_wait_s(self, usual_s: float, floor_s: float = 0.0) -> float:
        """How long one step of the shutdown may wait: ``usual_s``, or what is left before
        :attr:`exit_by` (at least ``floor_s``) once a drain has set it."""
        if self.exit_by is None:
            return usual_s
        left = self.exit_by - asyncio.get_running_loop().time()
        return max(floor_s, min(usual_s, left))

    def spawn_call(self, coro: Any, name: str) -> asyncio.Task[Any]:
        """Run a call that no request owns (SIP, WebRTC sideband); shutdown waits for it."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(name)
        self.call_tasks.add(task)
        task.add_done_callback(self.call_tasks.discard)
        return task

    def controller_config(self, **overrides: Any) -> ControllerConfig:
        s = self.settings
        # the simulator speaks faster by its speed factor; so does the estimate of a spoken line
        ms_per_char = 75.0 / (s.simulator_speed if s.uses_simulator else 1.0)
        config = ControllerConfig(
            remote_ms_per_char=ms_per_char,
            transcript_wait_s=s.transcript_wait_s,
            hold_delay_s=s.hold_delay_s,
            max_hold_lines=s.max_hold_lines,
            mark_interval_ms=s.mark_interval_ms,
            supervisor_deadline_s=s.supervisor_deadline_s,
            greeting=s.greeting,
            realtime_model=s.realtime_model,
            dtmf_rate_per_s=s.dtmf_rate_per_s,
            dtmf_burst=s.dtmf_burst,
        )
        return replace(config, **overrides)


SERVICES: web.AppKey[Services] = web.AppKey("services", Services)
