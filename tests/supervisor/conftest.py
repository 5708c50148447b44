"""Supervisor test fixtures: the policy library, the simulator's text-model double and the
supervisor service over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from infra.settings import Settings
from simulator.scenario import Scenario, Turn
from simulator.state import STATE_KEY, SimulatorState
from simulator.textmodel import add_text_model_routes
from supervisor.policies import PolicyLibrary
from supervisor.service import create_service_app
from tests.support.paths import POLICIES_DIR
from tests.support.supervisor import SUPERVISOR_TOKEN, TENT_QUESTION, StartTextModel, TextModel


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


@pytest.fixture
def service_settings(redis_url: str, key_prefix: str, tmp_path: Path) -> Callable[..., Settings]:
    """Settings of the supervisor service (``responder supervisor``) on the test Redis."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "openai_api_key": None,
            "redis_url": redis_url,
            "redis_prefix": key_prefix,
            "redis_data_dir": tmp_path / "redis",
            "supervisor_token": SUPERVISOR_TOKEN,
            "supervisor_deadline_s": 5.0,
            "simulator_scenario": "returns",
            "max_body_bytes": 4096,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
async def service(service_settings: Callable[..., Settings]) -> AsyncIterator[TestServer]:
    """The supervisor service, running on a free port."""
    server = TestServer(create_service_app(service_settings(), host="127.0.0.1"), host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()
