"""Supervisor test fixtures: the policy library and the simulator's text-model double."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from simulator.scenario import Scenario, Turn
from simulator.state import STATE_KEY, SimulatorState
from simulator.textmodel import add_text_model_routes
from supervisor.policies import PolicyLibrary

POLICIES_DIR = Path(__file__).resolve().parents[2] / "policies"

TENT_QUESTION = "Can I return a used tent?"


@dataclass
class TextModel:
    """A running text-model double: its base URL for the SDK and what it recorded."""

    server: TestServer
    state: SimulatorState

    @property
    def base_url(self) -> str:
        return str(self.server.make_url("/v1"))


StartTextModel = Callable[..., Awaitable[TextModel]]


@pytest.fixture(scope="session")
def library() -> PolicyLibrary:
    return PolicyLibrary.from_dir(POLICIES_DIR)


@pytest.fixture
def start_text_model(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> StartTextModel:
    """Start the text-model double on its own app (the routes under test, nothing else)."""

    async def start(*turns: Turn) -> TextModel:
        scenario = Scenario(name="supervisor-test", turns=list(turns) or [Turn(say=TENT_QUESTION)])
        app = web.Application()
        app[STATE_KEY] = SimulatorState(scenario=scenario)
        add_text_model_routes(app)
        server = await aiohttp_server(app)
        return TextModel(server, app[STATE_KEY])

    return start
