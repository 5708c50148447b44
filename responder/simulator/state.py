"""Keys under which the simulator app keeps its state (shared by its route modules)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from responder.simulator.scenario import Scenario


@dataclass
class SimulatorState:
    """What the simulator was told to do, and what it saw (for tests to assert on)."""

    scenario: Scenario
    speed: float = 1.0
    # Every client event received on any realtime socket, in order. Audio appends are
    # recorded without their payload (``{"type": "input_audio_buffer.append"}``).
    client_events: list[dict[str, Any]] = field(default_factory=list)
    # Client events that failed validation against the openai SDK's types.
    invalid_events: list[dict[str, Any]] = field(default_factory=list)
    # Every ``error`` event sent on any realtime socket: invalid events and refused actions
    # (``conversation_already_has_active_response``, truncation past the audio, …).
    errors_sent: list[dict[str, Any]] = field(default_factory=list)
    # Every request body received by /v1/responses and /v1/chat/completions.
    text_requests: list[dict[str, Any]] = field(default_factory=list)

    def scaled(self, seconds: float) -> float:
        """A scenario duration in wall-clock seconds at the configured speed factor."""
        return seconds / self.speed


STATE_KEY: web.AppKey[SimulatorState] = web.AppKey("simulator_state", SimulatorState)
