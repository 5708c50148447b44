"""What every transport needs for a call, built once per process at startup."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web
from openai import AsyncOpenAI

from responder.call import ControllerConfig, DecideFn
from responder.redis_server import RedisHandle
from responder.settings import Settings
from supervisor.history import CallHistory


@dataclass
class Services:
    settings: Settings
    redis: RedisHandle
    history: CallHistory
    realtime_client: AsyncOpenAI
    decide: DecideFn
    simulator_url: str | None = None
    simulator_state: Any = None  # the simulator's SimulatorState in keyless mode (tests read it)

    def controller_config(self) -> ControllerConfig:
        s = self.settings
        return ControllerConfig(
            transcript_wait_s=s.transcript_wait_s,
            hold_delay_s=s.hold_delay_s,
            max_hold_lines=s.max_hold_lines,
            supervisor_deadline_s=s.supervisor_deadline_s,
            greeting=s.greeting,
        )


SERVICES: web.AppKey[Services] = web.AppKey("services", Services)
