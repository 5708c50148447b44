"""Shared by the supervisor tests: the simulator's text-model double as they run it, and a
client of the supervisor service's ``/v1/decide``. The fixtures are in tests/supervisor/conftest.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from simulator.state import SimulatorState

TENT_QUESTION = "Can I return a used tent?"
SUPERVISOR_TOKEN = "supervisor-test-token-0123456789"


@dataclass
class TextModel:
    """A running text-model double: its base URL for the SDK and what it recorded."""

    server: TestServer
    state: SimulatorState

    @property
    def base_url(self) -> str:
        return str(self.server.make_url("/v1"))


StartTextModel = Callable[..., Awaitable[TextModel]]


async def post_decide(
    server: TestServer, body: bytes | str, token: str | None = SUPERVISOR_TOKEN
) -> tuple[int, Any]:
    """POST ``body`` to the supervisor service's ``/v1/decide``: the status and the JSON answer."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as session:
        async with session.post(server.make_url("/v1/decide"), data=body, headers=headers) as response:
            return response.status, await response.json(content_type=None)
