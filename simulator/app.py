"""The simulator: a local aiohttp stand-in for the OpenAI API (a test double).

It speaks the same wire protocol as the real API so that the real code paths, the ``openai``
SDK included, run unchanged against it:

* ``GET /v1/realtime`` — realtime WebSocket (``?model=``) and call sidebands (``?call_id=``),
  see :mod:`simulator.realtime_routes`;
* ``POST /v1/realtime/calls`` and ``/v1/realtime/calls/{call_id}/accept|reject|refer|hangup`` —
  WebRTC call creation and SIP call control, see :mod:`simulator.calls`;
* ``GET /v1/live/sessions`` — the GPT-Live primary WebSocket, see :mod:`simulator.live_routes`;
* ``POST /v1/responses`` and ``/v1/chat/completions`` — the supervisor's text model.

The SIP webhook sender is :mod:`simulator.sip`; a stand-in for Twilio's REST API
(call updates) is :mod:`simulator.twilio_rest`.
"""

from __future__ import annotations

from aiohttp import web

from simulator.calls import add_call_routes
from simulator.live_routes import add_live_routes
from simulator.probe import ProbeConfig, add_probe_routes
from simulator.realtime_routes import add_realtime_routes
from simulator.scenario import Scenario
from simulator.state import STATE_KEY, SimulatorState
from simulator.textmodel import add_text_model_routes


def create_simulator_app(
    scenario: Scenario, speed: float = 1.0, *, probe: bool | ProbeConfig = False
) -> web.Application:
    """``probe``: realtime sessions are timed load-test models (:mod:`simulator.probe`), talking
    as the :class:`ProbeConfig` given (``True``: the default one)."""
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app[STATE_KEY] = SimulatorState(scenario=scenario, speed=speed)
    if probe is not False:
        add_probe_routes(app, probe if isinstance(probe, ProbeConfig) else None)
    add_realtime_routes(app)
    add_call_routes(app)
    add_live_routes(app)
    add_text_model_routes(app)
    return app
