"""The real service on its own event loop, kept across the examples of one property test.

Hypothesis runs a test body many times; one service (and one simulator inside it) per test
function keeps that fast. The loop is driven from the synchronous test body, one
``run(coro)`` per example. The fixtures are in tests/fuzz/conftest.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp.test_utils import TestServer, unused_port

from infra.settings import Settings
from responder.runtime.services import SERVICES, Services
from responder.server.app import create_app
from tests.support.service import AUTH_TOKEN

T = TypeVar("T")


class ErrorRecords(logging.Handler):
    """Stdlib log records at ERROR and above (aiohttp's "Error handling request", asyncio's
    "Task exception was never retrieved"): none may appear while fuzzing."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class LoopService:
    def __init__(self, settings: Settings) -> None:
        self.loop = asyncio.new_event_loop()
        port = unused_port()
        settings = settings.model_copy(update={"port": port, "public_url": f"http://127.0.0.1:{port}"})
        self.server = TestServer(create_app(settings), host="127.0.0.1", port=port)
        self.run(self.server.start_server())
        self.http: aiohttp.ClientSession = self.run(self._session())

    @staticmethod
    async def _session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://")

    @property
    def services(self) -> Services:
        return self.server.app[SERVICES]

    def close(self) -> None:
        self.run(self.http.close())
        self.run(self.server.close())
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


def fuzz_settings(redis_url: str, key_prefix: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "openai_api_key": None,
        "redis_url": redis_url,
        "redis_prefix": key_prefix,
        "redis_data_dir": data_dir,
        "twilio_auth_token": AUTH_TOKEN,
        "simulator_speed": 8.0,
        "hold_delay_s": 3.0,
        "supervisor_deadline_s": 5.0,
        "transcript_wait_s": 0.2,
        "log_format": "json",
        # every example is a new call from 127.0.0.1: the per-client rate limit is not under test
        "call_rate_per_minute": 100_000.0,
        "call_rate_burst": 10_000,
    }
    values.update(overrides)
    return Settings(**values)


def shared_service(loop_service: Any, **overrides: Any) -> LoopService:
    """The service of one test function, started by its first example and reused by the rest
    (hypothesis calls the test body many times with the same fixture values)."""
    service: LoopService | None = getattr(loop_service, "service", None)
    if service is None:
        service = loop_service(**overrides)
        loop_service.service = service
    return service
