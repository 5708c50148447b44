"""The virtual caller of a WebRTC/SIP call's sideband socket (a test double of the person calling).

On a sideband (``/v1/realtime?call_id=rtc_…``) the caller's audio never crosses the socket:
it goes straight to the model over WebRTC or SIP. So the simulator plays the caller itself,
from the scenario:

1. It waits for the service to configure the session (its first client event, or
   :data:`START_WAIT_S`), then until the greeting (if the service asks for one) is over.
2. For each turn in order: its DTMF digits (SIP calls only,
   ``input_audio_buffer.dtmf_event_received``), ``input_audio_buffer.speech_started``, the
   turn's speech time (scaled by the speed factor), ``speech_stopped``, then the same commit as on a normal
   socket (``committed``, ``conversation.item.added``/``done`` for the user item, the
   transcription events) and, with turn detection's ``create_response``, the response: a
   chitchat reply, or a filler plus a function call whose output the service sends back.
3. Between turns it waits until nothing is left to say: no active response, no function
   call without output, no output waiting for its ``response.create``, the caller's
   playback drained, and :data:`SETTLE_S` of quiet.
4. After the last turn it waits ``scenario.quiet_ms`` (wall clock, giving the service the
   chance to hang up first) and hangs up: the call ends (``caller_hung_up``) and the socket
   closes. ``/hangup`` or ``/refer`` end the call too, and close the socket at once.

Audio is paced as on a normal socket but not sent; ``output_audio_buffer.started`` /
``.stopped`` (``.cleared`` when a response is cut off) tell the service what the caller
hears, as the real API does on WebRTC/SIP. Not played on a sideband: ``barge_in_after_ms``
(every turn waits until the service is quiet).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import structlog
from aiohttp import web

from simulator.realtime_items import Conversation, new_id
from simulator.realtime_response import LEAD_MS, ResponseRun
from simulator.scenario import DTMF_GAP_MS, speech_ms_for
from simulator.state import SimulatorState, VirtualCall

log = structlog.get_logger("simulator.virtual_caller")

START_WAIT_S = 1.0  # wall clock: how long to wait for the service's first event
SETTLE_S = 0.3  # wall clock: quiet needed after the service's last action before the next turn
MAX_WAIT_S = 45.0  # wall clock: give up waiting for the service and speak anyway
TICK_S = 0.01


class SidebandSession(Protocol):
    """What the virtual caller uses of its sideband session (``RealtimeSession`` is one).

    A protocol rather than the class: ``simulator.realtime`` creates the caller, so this
    module does not import it."""

    audio_total_ms: float
    last_activity: float
    pending_outputs: list[str]

    @property
    def state(self) -> SimulatorState: ...
    @property
    def ws(self) -> web.WebSocketResponse: ...
    @property
    def conversation(self) -> Conversation: ...
    @property
    def response(self) -> ResponseRun | None: ...

    async def emit(self, event: dict[str, Any]) -> None: ...
    def spawn(self, coro: Coroutine[Any, Any, None]) -> None: ...
    async def commit_user_turn(self, item_id: str, audio_ms: float, *, auto_response: bool) -> None: ...


class VirtualCaller:
    """Plays the scenario's caller on one sideband session."""

    def __init__(self, session: SidebandSession, call: VirtualCall) -> None:
        self.session = session
        self.call = call
        self.turns_spoken = 0
        self._playing_until = 0.0  # loop time at which the caller has heard all audio so far
        self._last_audio_response: str | None = None
        self._log = log.bind(rtc_call_id=call.id)

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def run(self) -> None:
        watcher = asyncio.get_running_loop().create_task(self._close_when_ended())
        try:
            await self._script()
        except _SocketGone:
            self._log.info("simulator.virtual_caller.socket_gone", turns=self.turns_spoken)
        finally:
            if self.call.ended.is_set():
                # the script may notice the ended call before the watcher runs: let it close the
                # socket (cancelled inside ws.close(), it would leave it closed abnormally)
                await asyncio.gather(watcher, return_exceptions=True)
            elif not watcher.done():
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)

    async def _script(self) -> None:
        connected = self._now()
        await self._wait_for(
            lambda: self.session.last_activity > connected or self._now() - connected >= START_WAIT_S
        )
        await self._settle()
        for turn in self.session.state.scenario.turns:
            if turn.dtmf and self.call.kind == "sip":  # keypad presses reach the API on SIP only
                await self._press(turn.dtmf)
            await self._speak(speech_ms_for(turn))
            await self._settle()
        quiet_s = self.session.state.scenario.quiet_ms / 1000
        await self._wait_for(lambda: self._now() - self.session.last_activity >= quiet_s)
        self._log.info("simulator.virtual_caller.hung_up", turns=self.turns_spoken)
        self.call.end("caller_hung_up")
        await self._close()

    async def _press(self, digits: str) -> None:
        for digit in digits:
            received = {"event": digit, "received_at": int(time.time())}
            await self.session.emit({"type": "input_audio_buffer.dtmf_event_received", **received})
            await asyncio.sleep(self.session.state.scaled(DTMF_GAP_MS / 1000))

    async def _speak(self, ms: int) -> None:
        session = self.session
        item_id = new_id("item")
        start_ms = int(session.audio_total_ms)
        started = {"audio_start_ms": start_ms, "item_id": item_id}
        await session.emit({"type": "input_audio_buffer.speech_started", **started})
        await asyncio.sleep(session.state.scaled(ms / 1000))
        session.audio_total_ms += ms
        end_ms = int(session.audio_total_ms)
        stopped = {"audio_end_ms": end_ms, "item_id": item_id}
        await session.emit({"type": "input_audio_buffer.speech_stopped", **stopped})
        self.turns_spoken += 1
        self._log.info("simulator.virtual_caller.turn_spoken", turn=self.turns_spoken, speech_ms=ms)
        await session.commit_user_turn(item_id, float(ms), auto_response=True)

    def _busy(self) -> bool:
        session = self.session
        return (
            session.response is not None
            or bool(session.pending_outputs)
            or self._now() < self._playing_until
            or bool(unanswered_calls(session))
            or self._now() - session.last_activity < SETTLE_S
        )

    async def _settle(self) -> None:
        give_up = self._now() + MAX_WAIT_S
        await self._wait_for(lambda: not self._busy() or self._now() >= give_up)
        if self._busy():
            self._log.warning("simulator.virtual_caller.gave_up_waiting", waited_s=MAX_WAIT_S)

    async def _wait_for(self, condition: Callable[[], bool]) -> None:
        while not condition():
            if self.session.ws.closed or self.call.ended.is_set():
                raise _SocketGone
            await asyncio.sleep(TICK_S)

    # --- what the caller hears -------------------------------------------------------------

    def response_finished(self, run: ResponseRun) -> None:
        if run.audio_ms <= 0:
            return
        self._last_audio_response = run.id
        if run.cancel_reason is not None:
            self._playing_until = self._now()
            cleared = {"type": "output_audio_buffer.cleared", "response_id": run.id}
            self.session.spawn(self.session.emit(cleared))
            return
        # response.done comes LEAD_MS of audio before the caller has heard the end of it
        tail_s = self.session.state.scaled(LEAD_MS / 1000)
        self._playing_until = max(self._playing_until, self._now() + tail_s)
        self.session.spawn(self._stopped_after(run.id, tail_s))

    async def on_output_clear(self, data: dict[str, Any]) -> None:
        """``output_audio_buffer.clear``: the caller stops hearing what is still queued."""
        response = self.session.response
        response_id = response.id if response is not None else self._last_audio_response
        self._playing_until = self._now()
        await self.session.emit({"type": "output_audio_buffer.cleared", "response_id": response_id or ""})

    async def _stopped_after(self, response_id: str, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        await self.session.emit({"type": "output_audio_buffer.stopped", "response_id": response_id})

    # --- ending ----------------------------------------------------------------------------

    async def _close_when_ended(self) -> None:
        await self.call.ended.wait()
        self._log.info("simulator.virtual_caller.call_ended", status=self.call.status)
        await self._close()

    async def _close(self) -> None:
        if not self.session.ws.closed:
            await self.session.ws.close(code=1000, message=f"call {self.call.status}".encode())


class _SocketGone(Exception):
    """The sideband closed or the call ended while the caller was waiting."""


def unanswered_calls(session: SidebandSession) -> list[str]:
    """Function calls in the conversation that have no ``function_call_output`` yet."""
    calls: list[str] = []
    answered: set[str] = set()
    for record in session.conversation.records.values():
        item = record.item
        if item.get("type") == "function_call" and item.get("status") == "completed":
            calls.append(str(item.get("call_id")))
        elif item.get("type") == "function_call_output":
            answered.add(str(item.get("call_id")))
    return [c for c in calls if c not in answered]
