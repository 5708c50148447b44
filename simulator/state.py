"""Keys under which the simulator app keeps its state (shared by its route modules)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from simulator.live_record import LiveSessionRecord
from simulator.realtime_faults import SocketDrop
from simulator.realtime_items import Conversation, new_id
from simulator.scenario import Scenario

CallKind = Literal["webrtc", "sip"]
# ringing: a SIP call waiting for accept/reject; active: accepted (SIP) or created (WebRTC);
# the rest are final.
CallStatus = Literal["ringing", "active", "rejected", "referred", "hung_up", "caller_hung_up"]
FINAL_STATUSES: frozenset[str] = frozenset({"rejected", "referred", "hung_up", "caller_hung_up"})


@dataclass
class VirtualCall:
    """A WebRTC or SIP call of the simulator: no media, a scenario plays the caller (sideband)."""

    id: str
    kind: CallKind
    status: CallStatus
    # Session config given at creation (WebRTC ``session`` part) or at ``/accept`` (SIP).
    session: dict[str, Any] | None = None
    sip_headers: list[dict[str, str]] = field(default_factory=list)
    # Set once the call is over; its sideband sockets close when it is.
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def is_over(self) -> bool:
        return self.status in FINAL_STATUSES

    def end(self, status: CallStatus) -> None:
        if not self.is_over:
            self.status = status
        self.ended.set()


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
    # Tests: HTTP statuses (429, 500, 503 …) the next text-model requests fail with, one per
    # request, in order; each failure is sent with ``text_failure_retry_after`` (seconds) as
    # Retry-After when set, and its status appended to ``text_failures_sent``.
    text_failures: list[int] = field(default_factory=list)
    text_failure_retry_after: float | None = None
    text_failures_sent: list[int] = field(default_factory=list)
    # Virtual WebRTC/SIP calls by id (``rtc_…``), and every call-control action that succeeded:
    # ``(call_id, "create" | "accept" | "reject" | "refer" | "hangup", body)``.
    calls: dict[str, VirtualCall] = field(default_factory=dict)
    # Realtime socket faults (see simulator.realtime_faults): drop rules still to
    # fire, upgrades still to refuse with 503, sockets dropped so far; and the conversation of
    # every realtime session (not sidebands), in the order the sessions opened.
    socket_drops: list[SocketDrop] = field(default_factory=list)
    refuse_realtime: int = 0
    sockets_dropped: int = 0
    conversations: list[Conversation] = field(default_factory=list)
    call_actions: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    # GPT-Live primary WebSockets (simulator.live): client events accepted (valid and not
    # refused; audio appends recorded as ``{"type": "session.input_audio.append"}``), events
    # that failed validation against openai.types.live, valid events refused by a semantic
    # error (each with ``_error``), every ``error`` event sent (those two and
    # ``context_injection_incomplete`` at close), and per session what the model heard and did.
    live_client_events: list[dict[str, Any]] = field(default_factory=list)
    live_invalid_events: list[dict[str, Any]] = field(default_factory=list)
    live_refused_events: list[dict[str, Any]] = field(default_factory=list)
    live_errors_sent: list[dict[str, Any]] = field(default_factory=list)
    live_sessions: list[LiveSessionRecord] = field(default_factory=list)
    # Virtual Live WebRTC/SIP sessions by id (``live_…``), see simulator.live_calls.
    live_calls: dict[str, VirtualCall] = field(default_factory=dict)
    # Live output track: silence between utterances (as the real server), and the period of
    # session.usage.updated in scenario seconds (None: never).
    live_output_silence: bool = True
    live_usage_interval_s: float | None = 15.0
    # a fault: this many primary sessions take session.start and never confirm it (no
    # session.started, nothing else either), as a server that hangs at startup
    live_unconfirmed_starts: int = 0

    def scaled(self, seconds: float) -> float:
        """A scenario duration in wall-clock seconds at the configured speed factor."""
        return seconds / self.speed

    def add_call(
        self,
        kind: CallKind,
        *,
        call_id: str | None = None,
        session: dict[str, Any] | None = None,
        sip_headers: list[dict[str, str]] | None = None,
    ) -> VirtualCall:
        """Register a virtual call: WebRTC calls start active, SIP calls ringing."""
        call = VirtualCall(
            id=call_id or new_id("rtc"),
            kind=kind,
            status="active" if kind == "webrtc" else "ringing",
            session=session,
            sip_headers=list(sip_headers or []),
        )
        self.calls[call.id] = call
        return call

    def caller_hangs_up(self, call_id: str) -> None:
        """Tests: the caller gives up (before accept, or mid-call: its sideband closes)."""
        self.calls[call_id].end("caller_hung_up")

    def actions_for(self, call_id: str) -> list[tuple[str, dict[str, Any]]]:
        return [(action, body) for cid, action, body in self.call_actions if cid == call_id]


STATE_KEY: web.AppKey[SimulatorState] = web.AppKey("simulator_state", SimulatorState)
