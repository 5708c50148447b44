"""GPT-Live sessions of the simulator: a deterministic test double of the primary Live WebSocket.

One :class:`LiveSession` per ``GET /v1/live/sessions`` socket (:mod:`simulator.live_routes`),
what ``AsyncOpenAI(base_url=…).live.connect()`` opens. It follows the real server as
docs/protocol-live.md describes it, with client delegation:

* **Validation**: every client event is checked against ``openai.types.live``
  (:mod:`simulator.live_protocol`); invalid or refused events get an ``error`` event.
  ``session.start`` must come first and once; ``session.started`` carries the resolved session.
* **Timeline**: the session timeline is the input audio appended (bytes ÷ bytes per ms of the
  session format). Every ``offset_ms``/``start_ms``/``end_ms`` is on it, and the model acts on
  it: acknowledgement delays and the placement of appended context wait for the timeline to
  advance, so a client that stops streaming audio gets nothing placed (as on the real server).
* **Caller turns** are detected on the input audio by energy (:mod:`simulator.vad`); each
  turn's end emits its transcript as several ``session.input_transcript.delta`` (no done
  event), matched to the scenario's next turn (:mod:`simulator.live_model`).
* **Speech** is one continuous output track (:mod:`simulator.live_speaker`).
* ``session.close`` drains the speech being played (≤ 10 s, scaled), reports every append not
  yet placed as a ``context_injection_incomplete`` error, sends ``session.closed`` and closes.
"""

from __future__ import annotations

import asyncio
import binascii
import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import structlog
from aiohttp import WSMsgType, web

from simulator.live_audio import LiveFormat
from simulator.live_model import LiveModel
from simulator.live_protocol import (
    APPEND,
    LiveError,
    apply_update,
    error_event,
    resolve_session,
    validate_client_event,
)
from simulator.live_record import LiveSessionRecord, LiveUtterance
from simulator.live_speaker import CHUNK_MS, Speaker
from simulator.realtime_items import new_id
from simulator.state import SimulatorState

log = structlog.get_logger("simulator.live")

DRAIN_S = 10.0  # scenario seconds: session.close waits this long at most for speech to end
INPUT_IDLE_S = 0.5  # scenario seconds without input after which unplaced appends are given up
MAX_FIXTURE_MS = 30_000
FIXTURE_BYTES_PER_MS = 48  # fixtures are PCM16 24 kHz mono whatever the session format

Handler = Callable[[dict[str, Any]], Awaitable[None]]
# Server events without an event_id (SDK: OutputAudioDeltaEvent, SessionInputAudioAppend).
_NO_EVENT_ID = frozenset({"session.output_audio.delta", "session.input_audio.append"})


class LiveSession:
    """One primary Live WebSocket: the session config, its timeline, the model and its voice."""

    SIDEBAND = False  # a sideband (simulator.live_sideband) validates against ConnectClientEvent

    def __init__(
        self, ws: web.WebSocketResponse, state: SimulatorState, *, session_id: str | None = None
    ) -> None:
        self.ws = ws
        self.state = state
        self.record = LiveSessionRecord(id=session_id or new_id("live"))
        state.live_sessions.append(self.record)
        self.config: dict[str, Any] | None = None
        self.fmt: LiveFormat | None = None
        self.speaker: Speaker | None = None
        self.model: LiveModel | None = None
        self.closing = False
        self.muted = False
        self.fixture: LiveUtterance | None = None
        self._fixture_event_id: str | None = None
        self._last_input_at = 0.0
        self.last_activity = asyncio.get_running_loop().time()  # last client event
        self._tasks: set[asyncio.Task[Any]] = set()
        self._send_lock = asyncio.Lock()
        self._event_prefix = new_id("event")
        self._event_seq = 0
        self._closed = False
        self._log = log.bind(live_session_id=self.record.id)
        self._handlers: dict[str, Handler] = {
            "session.update": self._on_update,
            APPEND: self._on_audio,
            "session.input_audio.mute": self._on_mute,
            "session.input_audio.unmute": self._on_mute,
            "session.output_audio.fixture.play": self._on_fixture,
            "session.instructions.append": self._on_append,
            "session.thinking.append": self._on_append,
            "session.commentary.append": self._on_append,
            "session.close": self._on_close,
        }

    @property
    def timeline_ms(self) -> float:
        return self.record.timeline_ms

    # --- connection ----------------------------------------------------------------------

    async def run(self) -> None:
        self._log.info("simulator.live.connected", sideband=self.SIDEBAND)
        try:
            await self.on_connect()
            async for msg in self.ws:
                if msg.type == WSMsgType.TEXT:
                    await self._handle_safely(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await self._invalid(
                        {"raw": "<binary>"}, LiveError("invalid_json", "Binary frames are not supported.")
                    )
        finally:
            if self.record.closed_reason is None:
                self.record.closed_reason = "connection_lost"
            self._closed = True
            await self._shutdown()
            self._log.info("simulator.live.closed", reason=self.record.closed_reason)

    async def on_connect(self) -> None:
        """Before the first client event (a sideband's session is already started)."""

    async def _shutdown(self) -> None:
        tasks = {t for t in self._tasks if t is not asyncio.current_task()}
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def emit(self, event: dict[str, Any]) -> None:
        if self._closed:
            return
        if event["type"] in _NO_EVENT_ID:
            payload = event
        else:
            self._event_seq += 1
            payload = {"event_id": f"{self._event_prefix}{self._event_seq:06d}", **event}
        try:
            async with self._send_lock:
                await self.ws.send_str(json.dumps(payload))
        except (ConnectionError, RuntimeError):
            self._closed = True

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def send_error(self, error: LiveError, client_event_id: Any = None) -> None:
        event_id = client_event_id if isinstance(client_event_id, str) else None
        details = {"code": error.code, "message": error.message, "param": error.param, "event_id": event_id}
        self.state.live_errors_sent.append(details)
        self.record.errors.append(details)
        self._log.warning(
            "simulator.live.error_sent", code=error.code, error=error.message, client_event_id=event_id
        )
        await self.emit(error_event(error, event_id))

    async def _invalid(self, record: dict[str, Any], error: LiveError) -> None:
        details = {"code": error.code, "message": error.message, "param": error.param}
        self.state.live_invalid_events.append({**record, "_error": details})
        await self.send_error(error, record.get("event_id"))

    # --- client events -------------------------------------------------------------------

    async def _handle_safely(self, text: str) -> None:
        try:
            await self.handle_text(text)
        except Exception:
            self._log.exception("simulator.live.handler_failed")
            await self.send_error(LiveError("server_error", "The simulator failed to handle this event."))

    async def handle_text(self, text: str) -> None:
        self.last_activity = asyncio.get_running_loop().time()
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            data = exc
        if not isinstance(data, dict):
            await self._invalid(
                {"raw": text[:500]}, LiveError("invalid_json", "A client event must be a JSON object.")
            )
            return
        record = {"type": APPEND, "event_id": data.get("event_id")} if data.get("type") == APPEND else data
        try:
            validate_client_event(data, sideband=self.SIDEBAND)
        except LiveError as error:
            await self._invalid(record, error)
            return
        try:
            await self._dispatch(data)
        except LiveError as error:
            details = {"code": error.code, "message": error.message, "param": error.param}
            self.state.live_refused_events.append({**record, "_error": details})
            await self.send_error(error, data.get("event_id"))
            return
        self.state.live_client_events.append({"type": APPEND} if record is not data else data)

    async def _dispatch(self, data: dict[str, Any]) -> None:
        event_type = data["type"]
        if event_type == "session.start":
            await self._on_start(data)
            return
        if self.config is None:
            message = (
                f"'{event_type}' before session.start: send session.start first and wait for session.started."
            )
            raise LiveError("session_not_started", message)
        if self.closing and event_type != APPEND:
            raise LiveError("session_closing", f"'{event_type}' after session.close: the session is closing.")
        handler = self._handlers.get(event_type)
        if handler is None:  # decision.* and response.*
            mode = self.config["delegation"]["type"]
            owner = "responses" if event_type.startswith("response.") else "decisions"
            if mode != owner:
                message = f"{event_type} requires {owner.capitalize()} delegation (this session uses {mode})."
                raise LiveError("delegation_mode_mismatch", message, "type")
            return  # accepted; the simulator plays client delegation only
        await handler(data)

    def _echo(self, data: dict[str, Any]) -> dict[str, Any]:
        event_id = data.get("event_id")
        return {"client_event_id": event_id} if isinstance(event_id, str) else {}

    async def _on_start(self, data: dict[str, Any]) -> None:
        if self.config is not None:
            raise LiveError(
                "session_already_started", "The session has already started: send session.start once."
            )
        if self.state.live_unconfirmed_starts > 0:  # the fault a test asked for: silence
            self.state.live_unconfirmed_starts -= 1
            self._log.warning("simulator.live.start_unconfirmed")
            return
        await self.begin(data["session"], echo=self._echo(data))

    async def begin(self, start_config: dict[str, Any], *, echo: dict[str, Any], media: bool = False) -> None:
        """Start the session: ``session.started``, the model, the output track. ``media``: a
        WebRTC/SIP session (sideband): no audio.format; caller audio and the reflected output
        are PCM16 24 kHz, output deltas carry their timeline position."""
        config = resolve_session(start_config, self.record.id, media=media)
        self.config = self.record.config = config
        self.record.started = True
        self.fmt = LiveFormat.of(None if media else config["audio"]["format"])
        self.speaker = Speaker(
            fmt=self.fmt,
            emit=self.emit,
            on_finished=self._utterance_finished,
            silence=self.state.live_output_silence,
            timestamps=media,
        )
        self.model = LiveModel(self, start_config)
        self._log.info("simulator.live.session_started", model=config["model"], format=self.fmt.encoding)
        await self.emit({"type": "session.started", "session": config, **echo})
        await self.speaker.advance(0)  # the track starts with the session
        if self.state.live_usage_interval_s:
            self.spawn(self._report_usage(self.state.live_usage_interval_s))

    async def _on_update(self, data: dict[str, Any]) -> None:
        assert self.config is not None
        self.config = self.record.config = apply_update(self.config, data["session"])
        await self.emit({"type": "session.updated", "session": self.config, **self._echo(data)})

    async def _on_audio(self, data: dict[str, Any]) -> None:
        assert self.fmt is not None and self.model is not None
        try:
            raw = binascii.a2b_base64(data["audio"], strict_mode=True)
        except (binascii.Error, ValueError):
            raise LiveError(
                "invalid_value", "Invalid 'audio': expected base64-encoded audio.", "audio"
            ) from None
        if len(raw) % self.fmt.sample_bytes:
            width = self.fmt.sample_bytes
            message = f"Invalid 'audio': {self.fmt.encoding} audio must be whole {width}-byte samples."
            raise LiveError("invalid_value", message, "audio")
        await self.feed_input(raw)

    async def feed_input(self, raw: bytes) -> None:
        """Caller audio in the session format: the model hears it, the timeline advances."""
        assert self.fmt is not None and self.model is not None and self.speaker is not None
        self._last_input_at = asyncio.get_running_loop().time()
        deaf = self.muted or self.fixture is not None  # muted input reaches the model as silence
        await self.model.hear(self.fmt.for_vad(raw) if not deaf else self.fmt.vad_silence(len(raw)))
        self.record.timeline_ms += self.fmt.duration_ms(len(raw))
        await self.model.timeline_advanced()
        await self.speaker.advance(self.timeline_ms)

    async def _on_mute(self, data: dict[str, Any]) -> None:
        self.muted = data["type"].endswith(".mute")
        kind = "muted" if self.muted else "unmuted"
        await self.emit({"type": f"session.input_audio.{kind}", **self._echo(data)})

    async def _on_fixture(self, data: dict[str, Any]) -> None:
        assert self.speaker is not None
        if self.fixture is not None:
            raise LiveError("fixture_active", "An audio fixture is already playing.")
        try:
            raw = binascii.a2b_base64(data["audio"], strict_mode=True)
        except (binascii.Error, ValueError):
            raise LiveError(
                "invalid_value", "Invalid 'audio': expected base64-encoded audio.", "audio"
            ) from None
        ms = len(raw) / FIXTURE_BYTES_PER_MS
        if len(raw) % 2 or not 0 < ms <= MAX_FIXTURE_MS:
            message = (
                f"Invalid 'audio': expected PCM16 24 kHz mono audio of at most {MAX_FIXTURE_MS // 1000} s."
            )
            raise LiveError("invalid_value", message, "audio")
        self.fixture = LiveUtterance("fixture", "", audio_ms=-(-int(ms) // CHUNK_MS) * CHUNK_MS)
        self.record.utterances.append(self.fixture)
        self._fixture_event_id = data.get("event_id")
        await self.emit({"type": "session.output_audio.fixture.playing", **self._echo(data)})
        self.speaker.play_now(self.fixture)

    async def _on_append(self, data: dict[str, Any]) -> None:
        assert self.model is not None
        if self.fixture is not None:
            raise LiveError(
                "fixture_active", f"{data['type']} is rejected while an audio fixture is playing."
            )
        await self.model.append(data)

    async def _on_close(self, data: dict[str, Any]) -> None:
        self.closing = True
        self.spawn(self._close(data))

    async def _close(self, data: dict[str, Any]) -> None:
        assert self.speaker is not None and self.model is not None
        self.speaker.hold(False)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.state.scaled(DRAIN_S)
        idle_s = self.state.scaled(INPUT_IDLE_S)
        step_s = self.state.scaled(CHUNK_MS / 1000)
        while self._draining(loop.time(), deadline, idle_s):
            await asyncio.sleep(step_s)
            if loop.time() - self._last_input_at >= step_s:  # no input: the track runs on the wall clock
                await self.speaker.advance(self.speaker.output_ms)
        await self.finish("close_requested", self._echo(data))

    async def finish(self, reason: str, echo: dict[str, Any]) -> None:
        """Report appends never placed, send ``session.closed`` and close the socket."""
        for task in [t for t in self._tasks if t is not asyncio.current_task()]:
            task.cancel()  # the usage reports (and a sideband's caller) stop here
        for append in list(self.model.unplaced if self.model is not None else []):
            message = f"The session closed before this {append.kind} append was placed on the timeline."
            await self.send_error(LiveError("context_injection_incomplete", message), append.client_event_id)
        self.record.closed_reason = reason
        closed = {"reason": reason, "session": self.config, "usage": self._usage()}
        await self.emit({"type": "session.closed", **closed, **echo})
        self._closed = True
        await self.ws.close()

    def _draining(self, now: float, deadline: float, idle_s: float) -> bool:
        """Still worth waiting before session.closed: speech to play, appends the input may place."""
        assert self.speaker is not None and self.model is not None
        if now >= deadline:
            return False
        return self.speaker.busy or bool(self.model.unplaced and now - self._last_input_at < idle_s)

    # --- the output track ----------------------------------------------------------------

    async def _utterance_finished(self, utterance: LiveUtterance) -> None:
        if utterance is self.fixture:
            self.fixture = None
            echo = {"client_event_id": self._fixture_event_id} if self._fixture_event_id else {}
            await self.emit({"type": "session.output_audio.fixture.played", **echo})
            return
        assert self.model is not None
        self.model.utterance_finished(utterance)

    def _usage(self) -> dict[str, Any]:
        return {"seconds": round(self.timeline_ms / 1000, 3)}

    async def _report_usage(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(self.state.scaled(every_s))
            await self.emit({"type": "session.usage.updated", "usage": self._usage()})
