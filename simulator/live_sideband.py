"""The sideband of a GPT-Live WebRTC/SIP session, and the virtual caller that plays it.

``GET /v1/live/sessions/{session_id}/attach`` (``client.live.sideband.connect(session_id=…)``)
attaches to a session created with ``POST /v1/live/sessions`` (WebRTC) or accepted with
``…/accept`` (SIP). The caller's audio never crosses this socket — it goes to the model over
WebRTC or SIP — so the simulator plays the caller itself, from the scenario:

* The session is already started: ``session.started`` comes first, with the config given at
  create/accept (no ``audio.format``: the media is negotiated). The client never sends
  ``session.start`` or audio (not in ``ConnectClientEvent``: refused as invalid).
* :class:`LiveVirtualCaller` streams the caller's audio into the model in real time ÷ speed
  (silence, or synthetic speech for each turn), so the timeline advances as on a call. Each
  20 ms is reflected to the sideband as ``session.input_audio.append`` (PCM16 24 kHz, as the
  real server does), the output as ``session.output_audio.delta`` with ``start_ms``/``end_ms``.
* For each turn in order: its DTMF digits (SIP only: ``transport.dtmf.received``), then its
  speech. Before a turn the caller waits until the previous one is answered — a reply or a
  delegation's commentary spoken, or for a turn the model did not delegate any commentary
  spoken after it — and nothing is playing or waiting (bounded by :data:`MAX_WAIT_S`), then
  :data:`SETTLE_S` of quiet; with ``barge_in_after_ms`` it speaks once it has heard that much
  agent speech since its previous turn instead.
* After the last turn it waits ``scenario.quiet_ms`` (wall clock) and hangs up: the call ends
  (``caller_hung_up``), ``session.closed`` (``remote_hangup``) and the socket closes.
  ``/hangup``, ``/refer`` or ``session.close`` end the call too (``close_requested``).
* ``transport.dtmf.send`` (SIP only) → ``transport.dtmf.sent``.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import structlog
from aiohttp import web

from simulator.live import LiveSession
from simulator.live_protocol import LiveError
from simulator.live_record import LiveCallerTurn
from simulator.scenario import DTMF_GAP_MS, Turn, speech_ms_for
from simulator.state import SimulatorState, VirtualCall

log = structlog.get_logger("simulator.live_sideband")

FRAME_MS = 20
START_WAIT_S = 1.0  # wall clock: how long to wait for the service's first event
SETTLE_S = 0.3  # wall clock: quiet needed after the service's last event before the next turn
MAX_WAIT_S = 45.0  # wall clock: give up waiting for an answer and speak anyway
TICK_S = 0.01
DTMF_KEYS = frozenset("0123456789ABCD*#")


class LiveSideband(LiveSession):
    """A sideband socket of one virtual Live call."""

    SIDEBAND = True

    def __init__(self, ws: web.WebSocketResponse, state: SimulatorState, call: VirtualCall) -> None:
        super().__init__(ws, state, session_id=call.id)
        self.call = call
        del self._handlers["session.input_audio.append"]
        self._handlers["transport.dtmf.send"] = self._on_dtmf
        self.caller = LiveVirtualCaller(self, call)

    async def on_connect(self) -> None:
        await self.begin(dict(self.call.session or {}), echo={}, media=True)
        self.spawn(self.caller.run())
        self.spawn(self._close_when_ended())

    async def feed_input(self, raw: bytes) -> None:
        await self.emit(
            {"type": "session.input_audio.append", "audio": base64.b64encode(raw).decode("ascii")}
        )
        await super().feed_input(raw)

    async def _close_when_ended(self) -> None:
        await self.call.ended.wait()
        reason = "remote_hangup" if self.call.status == "caller_hung_up" else "close_requested"
        await self.finish(reason, {})

    async def _on_close(self, data: dict[str, Any]) -> None:
        self.closing = True
        self.call.end("hung_up")

    async def _on_dtmf(self, data: dict[str, Any]) -> None:
        if self.call.kind != "sip":
            raise LiveError("invalid_value", "transport.dtmf.send is supported for SIP calls only.", "type")
        if data["event"] not in DTMF_KEYS:
            raise LiveError("invalid_value", "Invalid 'event': one of 0-9, A-D, * or #.", "event")
        await self.emit({"type": "transport.dtmf.sent", "event": data["event"], **self._echo(data)})


class LiveVirtualCaller:
    """Streams the caller's side of one virtual Live call into its session."""

    def __init__(self, session: LiveSideband, call: VirtualCall) -> None:
        self.session = session
        self.call = call
        self.turns_spoken = 0
        self._speech_frames = 0
        self._speech_done = asyncio.Event()
        self._log = log.bind(live_session_id=call.id)

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def run(self) -> None:
        stream = asyncio.get_running_loop().create_task(self._stream())
        try:
            await self._script()
        finally:
            stream.cancel()
            await asyncio.gather(stream, return_exceptions=True)

    async def _stream(self) -> None:
        session = self.session
        assert session.fmt is not None
        loop = asyncio.get_running_loop()
        t0, step_s, frame, offset = loop.time(), session.state.scaled(FRAME_MS / 1000), 0, 0
        silence = session.fmt.silence(FRAME_MS)
        while True:
            if self._speech_frames > 0:
                chunk = session.fmt.speech(FRAME_MS, offset_ms=offset)
                offset += FRAME_MS
                self._speech_frames -= 1
                if self._speech_frames == 0:
                    self._speech_done.set()
            else:
                chunk = silence
            await session.feed_input(chunk)
            frame += 1
            await asyncio.sleep(max(0.0, t0 + frame * step_s - loop.time()))

    async def _script(self) -> None:
        connected = self._now()
        await self._wait_for(lambda: self.session.last_activity > connected, START_WAIT_S)
        await self._settle()
        turns = self.session.state.scenario.turns
        for number, turn in enumerate(turns, start=1):
            assert self.session.speaker is not None
            heard_from = self.session.speaker.voiced_ms
            if turn.barge_in_after_ms is not None and number > 1:
                target = heard_from + turn.barge_in_after_ms
                await self._wait_for(lambda target=target: self._voiced() >= target, MAX_WAIT_S)
            elif number > 1:
                previous = turns[number - 2]
                await self._wait_for(lambda previous=previous: self._answered(previous), MAX_WAIT_S)
                await self._settle()
            if turn.dtmf and self.call.kind == "sip":  # keypad presses reach the API on SIP only
                await self._press(turn.dtmf)
            await self._speak(speech_ms_for(turn))
        if turns:
            await self._wait_for(lambda: self._answered(turns[-1]), MAX_WAIT_S)
        quiet_s = self.session.state.scenario.quiet_ms / 1000
        await self._wait_for(lambda: self._quiet_for(quiet_s), MAX_WAIT_S)
        self._log.info("simulator.live_sideband.hung_up", turns=self.turns_spoken)
        self.call.end("caller_hung_up")

    def _voiced(self) -> int:
        return self.session.speaker.voiced_ms if self.session.speaker is not None else 0

    def _last_turn(self) -> LiveCallerTurn | None:
        turns = self.session.record.caller_turns
        return turns[-1] if turns else None

    def _answered(self, turn: Turn) -> bool:
        """Whether the caller's latest turn (``turn`` of the scenario) has had its answer."""
        caller_turn, record = self._last_turn(), self.session.record
        if caller_turn is None or len(record.caller_turns) < self.turns_spoken:
            return False  # not detected yet
        after = [u for u in record.utterances if u.done and (u.start_ms or 0) >= caller_turn.detected_ms]
        if turn.reply:
            return bool(after)
        if caller_turn.delegation_id is not None:
            return record.delegations[caller_turn.delegation_id].spoken
        return any(u.kind == "commentary" for u in after)

    def _busy(self) -> bool:
        session = self.session
        return bool(
            (session.speaker is not None and session.speaker.busy)
            or (session.model and session.model.unplaced)
        )

    def _quiet_for(self, quiet_s: float) -> bool:
        return not self._busy() and self._now() - self.session.last_activity >= quiet_s

    async def _settle(self) -> None:
        await self._wait_for(lambda: self._quiet_for(SETTLE_S), MAX_WAIT_S)

    async def _wait_for(self, condition: Any, limit_s: float) -> None:
        deadline = self._now() + limit_s
        while not condition():
            if self._now() >= deadline:
                self._log.warning("simulator.live_sideband.gave_up_waiting", turns=self.turns_spoken)
                return
            await asyncio.sleep(TICK_S)

    async def _press(self, digits: str) -> None:
        for digit in digits:
            await self.session.emit({"type": "transport.dtmf.received", "event": digit})
            await asyncio.sleep(self.session.state.scaled(DTMF_GAP_MS / 1000))

    async def _speak(self, ms: int) -> None:
        self._speech_done.clear()
        self._speech_frames = -(-ms // FRAME_MS)
        await self._speech_done.wait()
        self.turns_spoken += 1
        self._log.info("simulator.live_sideband.turn_spoken", turn=self.turns_spoken, speech_ms=ms)
