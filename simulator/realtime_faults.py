"""Realtime socket faults of the simulator, for reconnect tests.

A test appends :class:`SocketDrop` rules to ``SimulatorState.socket_drops``. Right after a
realtime session sends the ``nth`` server event of type ``after_event`` while at least
``user_turns`` caller turns are in its conversation (committed audio turns and replayed
``input_text`` messages both count), the rule is used up: no further event goes out on that
socket and it is closed with code 1011, as when the server goes away mid-call. The rule's
``refuse_reconnects`` then makes the next that many ``GET /v1/realtime`` upgrades fail with
``503`` (``SimulatorState.refuse_realtime``), to test a reconnect that keeps failing.
Sideband sockets (WebRTC/SIP) are never dropped.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from aiohttp import web

log = structlog.get_logger("simulator.realtime")

DROP_CLOSE_CODE = 1011
_DROPS: set[asyncio.Task[None]] = set()  # close tasks outlive the session's own task set


@dataclass
class SocketDrop:
    after_event: str = "response.done"
    user_turns: int = 0
    refuse_reconnects: int = 0
    nth: int = 1  # fire on the nth matching event (1: the first)
    # after_event names a client event: the socket drops as it arrives, before it is handled
    # (as if it was sent into a socket the server had already left)
    client_event: bool = False
    seen: int = 0


class _FaultState(Protocol):
    """The fault bookkeeping of :class:`~simulator.state.SimulatorState`."""

    socket_drops: list[SocketDrop]
    refuse_realtime: int
    sockets_dropped: int


class DroppableSession(Protocol):
    """What :func:`check_drop` needs of a realtime session (``RealtimeSession`` is one).

    A protocol rather than the class: ``simulator.realtime`` and ``simulator.state`` import
    this module, so it imports neither."""

    @property
    def state(self) -> _FaultState: ...
    @property
    def call_id(self) -> str | None: ...
    @property
    def user_turns(self) -> int: ...
    @property
    def ws(self) -> web.WebSocketResponse: ...


def check_drop(session: DroppableSession, event: dict[str, Any], *, client: bool = False) -> bool:
    """Whether ``event`` (a server event just sent, or with ``client`` a client event just
    received) triggers a drop rule; if so, the socket is being closed."""
    state = session.state
    if session.call_id is not None:  # sidebands are not dropped
        return False
    for rule in state.socket_drops:
        if rule.client_event != client or rule.after_event != event.get("type"):
            continue
        if session.user_turns >= rule.user_turns:
            rule.seen += 1
            if rule.seen < rule.nth:
                continue
            state.socket_drops.remove(rule)
            state.refuse_realtime += rule.refuse_reconnects
            state.sockets_dropped += 1
            log.info("simulator.realtime.socket_dropped", after_event=rule.after_event,
                     user_turns=session.user_turns, refuse_reconnects=rule.refuse_reconnects)  # fmt: skip
            task = asyncio.get_running_loop().create_task(
                session.ws.close(code=DROP_CLOSE_CODE, message=b"simulated drop")
            )
            _DROPS.add(task)
            task.add_done_callback(_DROPS.discard)
            return True
    return False
