"""The one way into the simulator (a test double of the OpenAI API) from the product.

The service, the supervisor service and the CLI import this module only; the simulator
imports nothing of the product (an import contract checks both). Tests may reach further in.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from simulator.app import create_simulator_app
from simulator.caller import place_call
from simulator.caller_types import CallerReport
from simulator.probe import ProbeConfig
from simulator.scenario import Scenario, load_scenario
from simulator.state import STATE_KEY, SimulatorState

SIMULATOR_API_KEY = "sk-simulator-test-double"  # what clients send it; it checks nothing

__all__ = [
    "SIMULATOR_API_KEY",
    "CallerReport",
    "ProbeConfig",
    "Scenario",
    "SimulatorHandle",
    "SimulatorState",
    "load_scenario",
    "place_call",
    "serve_simulator",
    "start_simulator",
]


@dataclass
class SimulatorHandle:
    """A running simulator: its base URL (``…/v1`` is the API), its state (what tests read),
    and how to stop it."""

    runner: web.AppRunner
    url: str

    @property
    def state(self) -> SimulatorState:
        return self.runner.app[STATE_KEY]

    @property
    def api_base_url(self) -> str:
        return self.url + "/v1"

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_simulator(
    scenario: str, speed: float, host: str = "127.0.0.1", port: int = 0
) -> SimulatorHandle:
    """Run the simulator on a local port (0: any free one)."""
    # A test double: a request whose client went away (a supervisor past its deadline) is
    # cancelled, and shutdown does not wait long for the rest.
    runner = web.AppRunner(
        create_simulator_app(load_scenario(scenario), speed=speed),
        handler_cancellation=True,
        shutdown_timeout=1.0,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
    bound = sockets[0].getsockname()[1] if sockets else port
    return SimulatorHandle(runner, f"http://{host}:{bound}")


def serve_simulator(
    scenario: str, host: str, port: int, speed: float, *, probe: bool | ProbeConfig = False
) -> None:
    """Serve the simulator in the foreground until interrupted (``responder simulate``)."""
    app = create_simulator_app(load_scenario(scenario), speed=speed, probe=probe)
    web.run_app(app, host=host, port=port, print=None, handler_cancellation=True)
