"""The real service (aiohttp app) against the simulator, as the tests start it: settings and a
running server (the fixtures in tests/conftest.py wrap these)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from infra.settings import Settings
from responder.runtime.services import SERVICES, Services
from responder.server.app import create_app

AUTH_TOKEN = "test-twilio-auth-token"

# Audio speed (× the wall clock) of the simulator and of the simulated callers, which must agree.
# TIMING_SPEED is the settings' default: the one the timing assertions (heard positions at a
# barge-in, marks) are written for. A test whose assertions are not about audio timing runs its
# call at FAST_SPEED. Hold delays, deadlines and quiet periods are wall-clock either way.
TIMING_SPEED = 8.0
FAST_SPEED = 16.0


@pytest.fixture
def make_settings(redis_url: str, key_prefix: str, tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "openai_api_key": None,
            "redis_url": redis_url,
            "redis_prefix": key_prefix,
            "redis_data_dir": tmp_path / "redis",
            "twilio_auth_token": AUTH_TOKEN,
            "simulator_speed": TIMING_SPEED,
            "hold_delay_s": 3.0,
            "supervisor_deadline_s": 5.0,
            "transcript_wait_s": 1.0,
            "log_format": "json",
        }
        values.update(overrides)
        return Settings(**values)

    return make


class RunningService:
    def __init__(self, server: TestServer) -> None:
        self.server = server

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    @property
    def services(self) -> Services:
        return self.server.app[SERVICES]

    @property
    def speed(self) -> float:
        """The simulator's audio speed: a simulated caller of this service plays at the same."""
        return self.services.settings.simulator_speed


@pytest.fixture
async def start_service() -> AsyncIterator[Callable[..., Any]]:
    """Start the real service on a free port; public_url is set to where it listens."""
    servers: list[TestServer] = []

    async def start(settings: Settings) -> RunningService:
        from aiohttp.test_utils import unused_port

        port = unused_port()
        settings = settings.model_copy(update={"port": port, "public_url": f"http://127.0.0.1:{port}"})
        server = TestServer(create_app(settings), host="127.0.0.1", port=port)
        await server.start_server()
        servers.append(server)
        return RunningService(server)

    yield start
    for server in servers:
        await server.close()
