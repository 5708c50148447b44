"""Every structlog event name the simulator logs: a closed vocabulary, like the product's
(:mod:`infra.log_events`, which the simulator may not import). Call sites keep the literal;
``tests/infra/test_log_events.py`` checks that the two agree in both directions.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

SimulatorLogEvent = Literal[
    "simulator.caller.connection_cut",
    "simulator.caller.ended_by_rest",
    "simulator.caller.frame_malformed",
    "simulator.caller.no_greeting",
    "simulator.caller.service_hung_up",
    "simulator.calls.action",
    "simulator.calls.action_refused",
    "simulator.calls.create_refused",
    "simulator.calls.created",
    "simulator.live.caller_turn",
    "simulator.live.closed",
    "simulator.live.connected",
    "simulator.live.delegation_created",
    "simulator.live.error_sent",
    "simulator.live.handler_failed",
    "simulator.live.session_started",
    "simulator.live.sideband_refused",
    "simulator.live.start_unconfirmed",
    "simulator.live.upgrade_refused",
    "simulator.live_calls.action",
    "simulator.live_calls.action_refused",
    "simulator.live_calls.create_refused",
    "simulator.live_calls.created",
    "simulator.live_sideband.gave_up_waiting",
    "simulator.live_sideband.hung_up",
    "simulator.live_sideband.turn_spoken",
    "simulator.live_sip.webhook_delivered",
    "simulator.probe.event_invalid",
    "simulator.realtime.closed",
    "simulator.realtime.connected",
    "simulator.realtime.error_sent",
    "simulator.realtime.handler_failed",
    "simulator.realtime.response_finished",
    "simulator.realtime.response_started",
    "simulator.realtime.sideband_refused",
    "simulator.realtime.socket_dropped",
    "simulator.realtime.upgrade_refused",
    "simulator.realtime.user_turn_committed",
    "simulator.sip.webhook_delivered",
    "simulator.twilio_rest.call_updated",
    "simulator.twilio_rest.update_refused",
    "simulator.virtual_caller.call_ended",
    "simulator.virtual_caller.gave_up_waiting",
    "simulator.virtual_caller.hung_up",
    "simulator.virtual_caller.socket_gone",
    "simulator.virtual_caller.turn_spoken",
]

SIMULATOR_LOG_EVENTS: Final[frozenset[str]] = frozenset(get_args(SimulatorLogEvent))
