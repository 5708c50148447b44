"""The simulator: a local aiohttp stand-in for the OpenAI API (a test double).

It speaks the same wire protocol as the real API so that the real code paths, the ``openai``
SDK included, run unchanged against it.
"""

from __future__ import annotations

from aiohttp import web

from responder.simulator.realtime import add_realtime_routes
from responder.simulator.scenario import Scenario
from responder.simulator.state import STATE_KEY, SimulatorState
from responder.simulator.textmodel import add_text_model_routes


def create_simulator_app(scenario: Scenario, speed: float = 1.0) -> web.Application:
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app[STATE_KEY] = SimulatorState(scenario=scenario, speed=speed)
    add_realtime_routes(app)
    add_text_model_routes(app)
    return app
