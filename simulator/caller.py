"""A simulated phone caller: speaks the Twilio Media Streams protocol to our service.

It plays both Twilio and the person on the phone (a test double of each): posts the signed
incoming-call webhook, follows the TwiML ``<Connect><Stream>`` to the service's WebSocket,
streams paced μ-law frames (silence, or synthetic speech while the caller talks), models
Twilio's playback buffer (marks echoed only once the audio before them has played; ``clear``
flushes), and takes its turns from a scenario. Silent media from the service (a GPT-Live
call's continuous output track, relayed as is) is played but is not the agent speaking: it
neither delays the caller's turns nor counts towards ``barge_in_after_ms``.

Audio time runs ``speed`` times faster than the wall clock; ``scenario.quiet_ms`` is
wall-clock (the service's hold delay and deadlines are too).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import aiohttp
import structlog
from twilio.request_validator import RequestValidator

from simulator import audio
from simulator.caller_playback import PlaybackBuffer
from simulator.caller_types import (
    CallerError,
    CallerReport,
    CallerTimeout,
    StreamInstructions,
    parse_twiml,
)
from simulator.scenario import DTMF_GAP_MS, Scenario, speech_ms_for

if TYPE_CHECKING:
    from simulator.twilio_rest import CallEnd

__all__ = [
    "CallerError",
    "CallerReport",
    "CallerTimeout",
    "StreamInstructions",
    "parse_twiml",
    "place_call",
    "speech_ms_for",
]

log = structlog.get_logger("simulator.caller")

FRAME_MS = 20  # one Twilio media frame: 160 μ-law bytes
TICK_S = 0.01  # wall-clock resolution of the playback clock and of waits
GREETING_START_S = 5.0  # wall-clock wait for the greeting to start before speaking anyway
TO_NUMBER = "+15555550100"
_ULAW_SILENCE = bytes([audio.SILENCE_BYTE_PCMU, 0x7F])  # μ-law +0 and -0


class _ServiceHungUp(Exception):
    pass


async def place_call(
    service_url: str,
    scenario: Scenario,
    *,
    auth_token: str,
    speed: float = 1.0,
    call_sid: str | None = None,
    voice_path: str = "/twilio/voice",
    extra_frames: Sequence[str] = (),
    account_sid: str | None = None,
    to_number: str = TO_NUMBER,
    timeout_s: float | None = None,
    ended: CallEnd | None = None,
    cut_after_turn: int | None = None,
) -> CallerReport:
    """Place one simulated call through the service; returns what the caller experienced.

    ``extra_frames`` are raw text frames sent right after ``start`` (to test the service
    against malformed input). ``ended``: the handle of this call in the Twilio REST stand-in
    (:meth:`TwilioRestStandIn.register_call`); when an update completes or redirects the
    call, Twilio's side sends ``stop`` and closes the stream, as Twilio does.
    ``cut_after_turn``: once the answer to that turn (1-based) has played, the connection is
    cut (a network failure): no ``stop``, no WebSocket close frame.
    Raises :class:`CallerError` (or :class:`CallerTimeout`).
    """
    call = _Call(
        scenario,
        speed=speed,
        call_sid=call_sid or "CA" + secrets.token_hex(16),
        account_sid=account_sid or "AC" + secrets.token_hex(16),
        ended=ended,
    )
    call.cut_after_turn = cut_after_turn
    limit = timeout_s if timeout_s is not None else 60.0 + 15.0 * len(scenario.turns)
    webhook = service_url.rstrip("/") + voice_path
    async with aiohttp.ClientSession() as http:
        params = call.webhook_params(to_number)
        signature = RequestValidator(auth_token).compute_signature(webhook, params)
        async with http.post(webhook, data=params, headers={"X-Twilio-Signature": signature}) as resp:
            body = await resp.text()
            if resp.status != 200:
                raise CallerError(f"voice webhook {webhook} answered {resp.status}: {body[:300]}")
        stream = parse_twiml(body)
        call.report.custom_parameters = dict(stream.parameters)
        try:
            async with asyncio.timeout(limit):
                # Twilio signs the stream's upgrade too: its URL, with no parameters
                signed = RequestValidator(auth_token).compute_signature(stream.url, {})
                upgrade = {"X-Twilio-Signature": signed}
                async with http.ws_connect(stream.url, autoping=True, headers=upgrade) as ws:
                    await call.run(ws, stream.parameters, extra_frames)
        except TimeoutError:
            raise CallerTimeout(
                f"call {call.report.call_sid} did not finish within {limit:.0f}s ({call.phase})"
            ) from None
        except aiohttp.ClientError as exc:
            raise CallerError(f"media stream {stream.url} failed: {exc}") from exc
    return call.report


class _Call:
    """One call's media stream: sender, receiver, playback clock and the turn-taking script."""

    def __init__(
        self, scenario: Scenario, *, speed: float, call_sid: str, account_sid: str, ended: CallEnd | None
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.scenario = scenario
        self.speed = speed
        self.account_sid = account_sid
        self.ended = ended
        self.cut_after_turn: int | None = None
        self.report = CallerReport(call_sid=call_sid, stream_sid="MZ" + secrets.token_hex(16))
        self.playback = PlaybackBuffer()
        self.phase = "connecting"
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._streamer: asyncio.Task[None] | None = None
        self._send_lock = asyncio.Lock()
        self._seq = 0
        self._last_activity = 0.0  # loop time of the last sign of life from either side
        self._speech_frames = 0  # frames of speech still to send
        self._speech_done = asyncio.Event()
        self._service_gone = asyncio.Event()
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "media": self._on_media,
            "mark": self._on_mark,
            "clear": self._on_clear,
        }

    def webhook_params(self, to_number: str) -> dict[str, str]:
        return {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": self.report.call_sid,
            "CallStatus": "ringing",
            "Called": to_number,
            "Caller": self.scenario.caller_number,
            "Direction": "inbound",
            "From": self.scenario.caller_number,
            "To": to_number,
        }

    @property
    def _sid(self) -> str:
        return self.report.stream_sid

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def run(
        self, ws: aiohttp.ClientWebSocketResponse, params: dict[str, str], extra: Sequence[str]
    ) -> None:
        self._ws = ws
        started = time.monotonic()
        self._last_activity = self._now()
        await self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self._send(self._start_frame(params))
        for frame in extra:
            await self._send_text(frame)
        self._streamer = asyncio.create_task(self._stream_audio())
        tasks = [asyncio.create_task(self._receive()), asyncio.create_task(self._clock()), self._streamer]
        try:
            await self._script_unless_ended()
        except _ServiceHungUp:
            self.report.hung_up_by_service = True
            log.info("simulator.caller.service_hung_up", call_sid=self.report.call_sid, phase=self.phase)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.report.audio_ms_received = self.playback.received_ms
            self.report.audio_ms_played = self.playback.played_ms
            self.report.duration_s = time.monotonic() - started

    def _start_frame(self, params: dict[str, str]) -> dict[str, Any]:
        ids = {"accountSid": self.account_sid, "streamSid": self._sid, "callSid": self.report.call_sid}
        media_format = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
        start = {**ids, "tracks": ["inbound"], "customParameters": params, "mediaFormat": media_format}
        return {"event": "start", "streamSid": self._sid, "start": start}

    async def _script_unless_ended(self) -> None:
        """The script, cut short when a REST update ends the stream (Twilio: ``stop``, close)."""
        if self.ended is None:
            await self._script()
            return
        script = asyncio.create_task(self._script())
        ended = asyncio.create_task(self.ended.wait())
        await asyncio.wait({script, ended}, return_when=asyncio.FIRST_COMPLETED)
        ended.cancel()
        if not self.ended.fired or script.done():
            await script  # raises _ServiceHungUp as the script would
            return
        script.cancel()
        await asyncio.gather(script, return_exceptions=True)
        self.report.ended_by_rest = self.ended.reason
        log.info("simulator.caller.ended_by_rest", call_sid=self.report.call_sid, reason=self.ended.reason)
        await self._stop()

    # --- the person on the phone ---------------------------------------------------------

    async def _script(self) -> None:
        self.phase = "waiting for the greeting"
        give_up = self._now() + GREETING_START_S
        await self._wait_for(lambda: self.playback.voiced_received_ms > 0 or self._now() >= give_up)
        if self.playback.voiced_received_ms == 0:
            log.warning(
                "simulator.caller.no_greeting", call_sid=self.report.call_sid, waited_s=GREETING_START_S
            )
        await self._wait_quiet()
        heard_at_turn_end = self.playback.voiced_played_ms
        for number, turn in enumerate(self.scenario.turns, start=1):
            self.phase = f"waiting to speak turn {number}"
            if turn.barge_in_after_ms is not None:
                target = heard_at_turn_end + turn.barge_in_after_ms
                await self._wait_for(lambda target=target: self.playback.voiced_played_ms >= target)
            else:
                await self._wait_quiet()
            self.phase = f"speaking turn {number}"
            for digit in turn.dtmf or "":
                dtmf = {
                    "event": "dtmf",
                    "streamSid": self._sid,
                    "dtmf": {"track": "inbound_track", "digit": digit},
                }
                await self._send(dtmf)
                await asyncio.sleep(DTMF_GAP_MS / 1000 / self.speed)
            await self._speak(speech_ms_for(turn))
            heard_at_turn_end = self.playback.voiced_played_ms
            if number == self.cut_after_turn:
                self.phase = "cutting the connection"
                await self._wait_quiet()
                await self._cut()
                return
        self.phase = "waiting to hang up"
        await self._wait_quiet()
        self.phase = "hanging up"
        await self._stop()

    async def _stop(self) -> None:
        if self._streamer is not None:  # no media after "stop"
            self._streamer.cancel()
            await asyncio.gather(self._streamer, return_exceptions=True)
        stop = {"accountSid": self.account_sid, "callSid": self.report.call_sid}
        await self._send({"event": "stop", "streamSid": self._sid, "stop": stop})
        if self._ws is not None:
            await self._ws.close()

    async def _cut(self) -> None:
        """The network fails: the TCP connection ends with neither ``stop`` nor a close frame."""
        if self._streamer is not None:
            self._streamer.cancel()
            await asyncio.gather(self._streamer, return_exceptions=True)
        sock = self._ws.get_extra_info("socket") if self._ws is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        log.info("simulator.caller.connection_cut", call_sid=self.report.call_sid)

    async def _speak(self, ms: int) -> None:
        self._speech_done.clear()
        self._speech_frames = -(-ms // FRAME_MS)
        await self._speech_done.wait()
        self._last_activity = self._now()

    async def _wait_for(self, condition: Callable[[], bool]) -> None:
        while not condition():
            if self._service_gone.is_set():
                raise _ServiceHungUp
            await asyncio.sleep(TICK_S)

    async def _wait_quiet(self) -> None:
        quiet_s = self.scenario.quiet_ms / 1000
        await self._wait_for(
            lambda: not self.playback.playing and self._now() - self._last_activity >= quiet_s
        )

    # --- media out -----------------------------------------------------------------------

    async def _stream_audio(self) -> None:
        loop = asyncio.get_running_loop()
        t0, step_s = loop.time(), FRAME_MS / 1000 / self.speed
        frame, speech_offset = 0, 0
        silence = audio.silence(FRAME_MS, "pcmu")
        while True:
            if self._speech_frames > 0:
                payload = audio.speech(FRAME_MS, "pcmu", offset_ms=speech_offset)
                speech_offset += FRAME_MS
                self._speech_frames -= 1
                if self._speech_frames == 0:
                    self._speech_done.set()
            else:
                payload = silence
            media = {
                "track": "inbound",
                "chunk": str(frame + 1),
                "timestamp": str(frame * FRAME_MS),
                "payload": base64.b64encode(payload).decode("ascii"),
            }
            if await self._send({"event": "media", "streamSid": self._sid, "media": media}):
                self.report.frames_sent += 1
            frame += 1
            await asyncio.sleep(max(0.0, t0 + frame * step_s - loop.time()))

    async def _send(self, frame: dict[str, Any]) -> bool:
        if frame["event"] != "connected":
            self._seq += 1
            frame = {"event": frame["event"], "sequenceNumber": str(self._seq), **frame}
        return await self._send_text(json.dumps(frame))

    async def _send_text(self, text: str) -> bool:
        if self._ws is None or self._ws.closed:
            return False
        try:
            async with self._send_lock:
                await self._ws.send_str(text)
        except (ConnectionError, RuntimeError):
            self._service_gone.set()
            return False
        return True

    # --- media in: Twilio's playback buffer ----------------------------------------------

    async def _clock(self) -> None:
        last = self._now()
        while True:
            await asyncio.sleep(TICK_S)
            now = self._now()
            if self.playback.playing:
                self._last_activity = now
            await self._echo(self.playback.advance((now - last) * 1000 * self.speed))
            last = now

    async def _echo(self, marks: list[str]) -> None:
        for name in marks:
            await self._send({"event": "mark", "streamSid": self._sid, "mark": {"name": name}})
            self.report.marks_echoed += 1

    async def _receive(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                self._malformed("non-text frame")
                continue
            try:
                frame = json.loads(msg.data)
            except ValueError:
                self._malformed("invalid JSON")
                continue
            handler = self._handlers.get(frame.get("event")) if isinstance(frame, dict) else None
            if handler is None or frame.get("streamSid") != self._sid:
                self._malformed("unknown event or streamSid")
                continue
            try:
                handler(frame)
            except (KeyError, TypeError, ValueError, binascii.Error):
                self._malformed("bad event body")
                continue
            if frame["event"] == "clear":
                await self._echo(self.playback.clear())
        self._service_gone.set()

    def _malformed(self, reason: str) -> None:
        self.report.malformed_frames += 1
        log.warning("simulator.caller.frame_malformed", call_sid=self.report.call_sid, reason=reason)

    def _on_media(self, frame: dict[str, Any]) -> None:
        payload = base64.b64decode(frame["media"]["payload"], validate=True)
        # Digital silence (GPT-Live's track between replies, if relayed) is not the agent talking.
        silent = not payload.translate(None, _ULAW_SILENCE)
        self.playback.add_media(audio.duration_ms(len(payload), "pcmu"), silent=silent)
        if not silent:
            self._last_activity = self._now()

    def _on_mark(self, frame: dict[str, Any]) -> None:
        name = frame["mark"]["name"]
        if not isinstance(name, str):
            raise TypeError("mark name must be a string")
        self.playback.add_mark(name)

    def _on_clear(self, frame: dict[str, Any]) -> None:
        self.report.clears_received += 1
        self._last_activity = self._now()
