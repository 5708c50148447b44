"""Realtime sessions of the simulator: a deterministic test double of the OpenAI Realtime GA server.

One :class:`RealtimeSession` per WebSocket (``GET /v1/realtime?model=…``, mounted by
:mod:`simulator.realtime_routes`). The real service connects with the ``openai``
SDK. Every client event is checked against the SDK's own ``RealtimeClientEvent`` types
(appends included, plus strict base64) and answered with an ``error`` event when invalid, as
the real API does. Turn detection runs on the audio's energy in audio time; what the "model"
says comes from the scenario (see :mod:`simulator.realtime_response`).

On a sideband (``?call_id=rtc_…`` of a known virtual call) no caller audio arrives and no
``response.output_audio.delta`` is sent: :class:`~simulator.virtual_caller.VirtualCaller`
plays the caller's turns from the scenario (see there).
"""

from __future__ import annotations

import asyncio
import binascii
import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final

import structlog
from aiohttp import WSMsgType, web

from simulator.audio import AudioFormat, duration_ms, format_from_session
from simulator.realtime_faults import check_drop
from simulator.realtime_items import Conversation, ItemRecord, new_id, user_audio_item
from simulator.realtime_protocol import (
    APPEND,
    DEFAULT_FORMAT,
    ClientEventError,
    apply_session_update,
    default_session,
    error_event,
    merge_session,
    validate_client_event,
)
from simulator.realtime_response import ResponseRun, plan_outputs
from simulator.scenario import Turn
from simulator.state import SimulatorState, VirtualCall
from simulator.vad import DEFAULT_SILENCE_MS, EnergyVad, VadEvent
from simulator.virtual_caller import VirtualCaller

_COMPACT: Final = (",", ":")  # as the API writes its events: no spaces

log = structlog.get_logger("simulator.realtime")

MIN_COMMIT_MS = 100
UNKNOWN_TURN = Turn(say="(unintelligible)", reply="Sorry, could you say that again?")

Handler = Callable[[dict[str, Any]], Awaitable[None]]


class RealtimeSession:
    """One realtime WebSocket connection: its session config, conversation, VAD and response."""

    def __init__(
        self, ws: web.WebSocketResponse, state: SimulatorState, *, model: str, call: VirtualCall | None = None
    ) -> None:
        self.ws = ws
        self.state = state
        self.call_id = call.id if call is not None else None
        self.session = default_session(model)
        if call is not None and call.session:  # the config given at create/accept
            self.session = merge_session(self.session, {k: v for k, v in call.session.items() if k != "type"})
        # Sideband of a WebRTC/SIP call: a virtual caller plays the scenario, audio goes to it directly.
        self.caller = VirtualCaller(self, call) if call is not None else None
        self.last_activity = asyncio.get_running_loop().time()
        self.conversation = Conversation()
        if call is None:
            state.conversations.append(self.conversation)
        self.response: ResponseRun | None = None
        self.pending_outputs: list[str] = []  # function_call_output texts not yet spoken
        self.unanswered: Turn | None = None  # the latest user turn no response has answered yet
        self.user_turns = 0
        self.buffer_ms = 0.0  # audio in the input buffer since the last commit/clear
        self.audio_total_ms = 0.0
        self.vad: EnergyVad | None = None
        self._vad_key: tuple[Any, ...] | None = None
        self._speech_item_id: str | None = None
        self._speech_start_ms = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._send_lock = asyncio.Lock()
        self._event_prefix = new_id("event")
        self._event_seq = 0
        self._closed = False
        self._log = log.bind(session_id=self.session["id"], rtc_call_id=self.call_id)
        self._handlers: dict[str, Handler] = {
            "session.update": self._on_session_update,
            "input_audio_buffer.commit": self._on_commit,
            "input_audio_buffer.clear": self._on_clear,
            "conversation.item.create": self._on_item_create,
            "conversation.item.truncate": self._on_truncate,
            "conversation.item.delete": self._on_item_delete,
            "conversation.item.retrieve": self._on_item_retrieve,
            "response.create": self._on_response_create,
            "response.cancel": self._on_response_cancel,
        }
        if self.caller is not None:  # WebRTC/SIP only
            self._handlers["output_audio_buffer.clear"] = self.caller.on_output_clear
        self._configure_vad()

    # --- connection ----------------------------------------------------------------------

    async def run(self) -> None:
        self._log.info("simulator.realtime.connected", model=self.session["model"])
        await self.emit({"type": "session.created", "session": self.session})
        if self.caller is not None:
            self.spawn(self.caller.run())
        try:
            async for msg in self.ws:
                if msg.type == WSMsgType.TEXT:
                    await self._handle_safely(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    error = ClientEventError("invalid_json", "Binary frames are not supported.")
                    await self._invalid({"raw": "<binary>"}, error)
        finally:
            self._closed = True
            await self._shutdown()
            self._log.info("simulator.realtime.closed", user_turns=self.user_turns)

    async def _shutdown(self) -> None:
        tasks = set(self._tasks)
        if self.response is not None and self.response.task is not None:
            tasks.add(self.response.task)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def emit(self, event: dict[str, Any]) -> None:
        if self._closed:
            return
        self._event_seq += 1
        payload = {"event_id": f"{self._event_prefix}{self._event_seq:05d}", **event}
        try:
            async with self._send_lock:
                await self.ws.send_str(json.dumps(payload, separators=_COMPACT))
        except (ConnectionError, RuntimeError):
            self._closed = True
        if self.state.socket_drops and check_drop(self, event):
            self._closed = True  # nothing more goes out: the socket is being dropped

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _error(self, error: ClientEventError, client_event_id: Any = None) -> None:
        event_id = client_event_id if isinstance(client_event_id, str) else None
        self.state.errors_sent.append({"code": error.code, "message": error.message, "event_id": event_id})
        self._log.warning(
            "simulator.realtime.error_sent", code=error.code, error=error.message, client_event_id=event_id
        )
        await self.emit(error_event(error.code, error.message, error.param, event_id))

    async def _invalid(self, record: dict[str, Any], error: ClientEventError) -> None:
        details = {"code": error.code, "message": error.message, "param": error.param}
        self.state.invalid_events.append({**record, "_error": details})
        await self._error(error, record.get("event_id"))

    # --- client events -------------------------------------------------------------------

    async def _handle_safely(self, text: str) -> None:
        try:
            await self.handle_text(text)
        except Exception:
            self._log.exception("simulator.realtime.handler_failed")
            await self._error(ClientEventError("server_error", "The simulator failed to handle this event."))

    async def handle_text(self, text: str) -> None:
        self.last_activity = asyncio.get_running_loop().time()
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            data = exc
        if not isinstance(data, dict):
            raw = {"raw": text[:500]}
            self.state.client_events.append(raw)
            await self._invalid(
                raw, ClientEventError("invalid_json", "A client event must be a JSON object.")
            )
            return
        if data.get("type") == APPEND:
            self.state.client_events.append({"type": APPEND})
            try:  # appends too are checked against the SDK's type (the audio is not kept)
                validate_client_event(data)
            except ClientEventError as error:
                await self._invalid({"type": APPEND, "event_id": data.get("event_id")}, error)
                return
            await self._on_append(data)
            return
        self.state.client_events.append(data)
        if self._closed or (self.state.socket_drops and check_drop(self, data, client=True)):
            self._closed = True  # dropped before handling it: no answer, no further event
            return
        try:
            validate_client_event(data)
        except ClientEventError as error:
            await self._invalid(data, error)
            return
        handler = self._handlers.get(data["type"])
        if handler is None:  # valid, but nothing for the simulator to do (output_audio_buffer.clear)
            return
        try:
            await handler(data)
        except ClientEventError as error:
            await self._error(error, data.get("event_id"))

    async def _on_append(self, data: dict[str, Any]) -> None:
        audio, record = data.get("audio"), {"type": APPEND, "event_id": data.get("event_id")}
        if not isinstance(audio, str):
            missing = ClientEventError(
                "missing_required_parameter", "Missing required parameter: 'audio'.", "audio"
            )
            await self._invalid(record, missing)
            return
        try:
            raw = binascii.a2b_base64(audio, strict_mode=True)
        except (binascii.Error, ValueError):
            bad = ClientEventError(
                "invalid_value", "Invalid 'audio'. Expected base64-encoded audio.", "audio"
            )
            await self._invalid(record, bad)
            return
        ms = duration_ms(len(raw), self._input_format())
        self.buffer_ms += ms
        self.audio_total_ms += ms
        if self.vad is not None:
            for event in self.vad.feed(raw):
                await self._on_vad(event)

    async def _on_session_update(self, data: dict[str, Any]) -> None:
        self.session = apply_session_update(self.session, data["session"])
        self._configure_vad()
        await self.emit({"type": "session.updated", "session": self.session})

    async def _on_commit(self, data: dict[str, Any]) -> None:
        if self.buffer_ms < MIN_COMMIT_MS:
            raise ClientEventError(
                "input_audio_buffer_commit_empty",
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {self.buffer_ms:.2f}ms of audio.",
            )
        if self.vad is not None:
            self.vad.reset()
        await self.commit_user_turn(
            self._speech_item_id or new_id("item"), self.buffer_ms, auto_response=False
        )

    async def _on_clear(self, data: dict[str, Any]) -> None:
        self.buffer_ms = 0.0
        self._speech_item_id = None
        if self.vad is not None:
            self.vad.reset()
        await self.emit({"type": "input_audio_buffer.cleared"})

    async def _on_item_create(self, data: dict[str, Any]) -> None:
        item = dict(data["item"])
        item["id"] = item.get("id") or new_id("item")
        item.setdefault("object", "realtime.item")
        item["status"] = item.get("status") or "completed"
        if self.conversation.get(item["id"]) is not None:
            raise ClientEventError("invalid_value", f"Item with id '{item['id']}' already exists.", "item.id")
        after = data.get("previous_item_id")
        try:
            previous = self.conversation.insert(item, after)
        except KeyError:
            message = f"Previous item with item_id '{after}' not found."
            raise ClientEventError("invalid_value", message, "previous_item_id") from None
        await self.emit({"type": "conversation.item.added", "previous_item_id": previous, "item": item})
        await self.emit({"type": "conversation.item.done", "previous_item_id": previous, "item": item})
        if item.get("type") == "function_call_output":
            self.pending_outputs.append(str(item.get("output") or ""))
        elif item.get("type") == "function_call":
            self.unanswered = None  # a (replayed) tool call took the caller's turn
        elif item.get("type") == "message" and item.get("role") == "assistant":
            self.unanswered = None  # a (replayed) answer: the turn and tool outputs are spoken for
            self.pending_outputs.clear()
        elif item.get("type") == "message" and item.get("role") == "user":
            parts = [c.get("text") or "" for c in item.get("content") or [] if c.get("type") == "input_text"]
            text = " ".join(parts).strip()
            if text:
                self.user_turns += 1
                self.unanswered = self.state.scenario.turn_for_text(text) or Turn(say=text)

    async def _on_truncate(self, data: dict[str, Any]) -> None:
        item_id, end_ms = data["item_id"], data["audio_end_ms"]
        record = self._record(item_id)
        if record.item.get("role") != "assistant" or data["content_index"] != 0:
            message = "Only the audio content (content_index 0) of an assistant message can be truncated."
            raise ClientEventError("invalid_value", message, "content_index")
        if end_ms < 0 or end_ms > record.audio_ms:
            message = f"Audio content of {int(record.audio_ms)}ms is already shorter than {end_ms}ms"
            raise ClientEventError("invalid_value", message, "audio_end_ms")
        record.audio_ms = float(end_ms)
        truncated = {"item_id": item_id, "content_index": 0, "audio_end_ms": end_ms}
        await self.emit({"type": "conversation.item.truncated", **truncated})

    async def _on_item_delete(self, data: dict[str, Any]) -> None:
        self._record(data["item_id"])
        self.conversation.delete(data["item_id"])
        await self.emit({"type": "conversation.item.deleted", "item_id": data["item_id"]})

    async def _on_item_retrieve(self, data: dict[str, Any]) -> None:
        record = self._record(data["item_id"])
        await self.emit({"type": "conversation.item.retrieved", "item": record.item})

    def _record(self, item_id: str) -> ItemRecord:
        record = self.conversation.get(item_id)
        if record is None:
            raise ClientEventError("invalid_value", f"Item with item_id '{item_id}' not found.", "item_id")
        return record

    async def _on_response_create(self, data: dict[str, Any]) -> None:
        self._start_response(data.get("response") or {})

    async def _on_response_cancel(self, data: dict[str, Any]) -> None:
        run, wanted = self.response, data.get("response_id")
        if run is None or (wanted and wanted != run.id):
            message = "Cancellation failed: no active response found."
            raise ClientEventError("response_cancel_not_active", message)
        await run.cancel("client_cancelled")

    # --- turn detection and commits ------------------------------------------------------

    def _audio(self, direction: str) -> dict[str, Any]:
        return (self.session.get("audio") or {}).get(direction) or {}

    def _input_format(self) -> AudioFormat:
        return format_from_session(self._audio("input").get("format"))

    def _turn_detection(self) -> dict[str, Any] | None:
        return self._audio("input").get("turn_detection")

    def _configure_vad(self) -> None:
        detection = self._turn_detection()
        silence_ms = DEFAULT_SILENCE_MS
        if detection is not None and detection.get("type") == "server_vad":
            silence_ms = detection.get("silence_duration_ms") or DEFAULT_SILENCE_MS
        key = (detection is not None, self._input_format(), silence_ms)
        if key == self._vad_key:
            return
        self._vad_key = key
        self.vad = None
        if detection is not None:
            self.vad = EnergyVad(self._input_format(), silence_ms=silence_ms)
            self.vad.total_ms = int(self.audio_total_ms)

    async def _on_vad(self, event: VadEvent) -> None:
        if event.kind == "started":
            self._speech_item_id = new_id("item")
            self._speech_start_ms = event.audio_ms
            started = {"audio_start_ms": event.audio_ms, "item_id": self._speech_item_id}
            await self.emit({"type": "input_audio_buffer.speech_started", **started})
            detection = self._turn_detection() or {}
            if self.response is not None and detection.get("interrupt_response", True):
                await self.response.cancel("turn_detected")
            return
        item_id = self._speech_item_id or new_id("item")
        stopped = {"audio_end_ms": event.audio_ms, "item_id": item_id}
        await self.emit({"type": "input_audio_buffer.speech_stopped", **stopped})
        await self.commit_user_turn(
            item_id, float(event.audio_ms - self._speech_start_ms), auto_response=True
        )

    async def commit_user_turn(self, item_id: str, audio_ms: float, *, auto_response: bool) -> None:
        self.buffer_ms = 0.0
        self._speech_item_id = None
        turns = self.state.scenario.turns
        turn = turns[self.user_turns] if self.user_turns < len(turns) else UNKNOWN_TURN
        self.user_turns += 1
        self.unanswered = turn
        item = user_audio_item(item_id)
        previous = self.conversation.append(item)
        ids = {"item_id": item_id, "previous_item_id": previous}
        await self.emit({"type": "input_audio_buffer.committed", **ids})
        await self.emit({"type": "conversation.item.added", "previous_item_id": previous, "item": item})
        await self.emit({"type": "conversation.item.done", "previous_item_id": previous, "item": item})
        self._log.info("simulator.realtime.user_turn_committed", item_id=item_id, turn=self.user_turns)
        self.spawn(self._transcribe_later(item_id, turn, audio_ms))
        detection = self._turn_detection()
        wants_response = detection is not None and detection.get("create_response", True)
        if auto_response and wants_response and self.response is None:
            self._start_response({})

    async def _transcribe_later(self, item_id: str, turn: Turn, audio_ms: float) -> None:
        await asyncio.sleep(self.state.scaled(turn.transcript_delay_ms / 1000))
        self.conversation.update(user_audio_item(item_id, turn.say))
        ids = {"item_id": item_id, "content_index": 0}
        delta = {"type": "conversation.item.input_audio_transcription.delta", **ids, "delta": turn.say}
        await self.emit(delta)
        usage = {"type": "duration", "seconds": round(audio_ms / 1000, 3)}
        completed = {"type": "conversation.item.input_audio_transcription.completed", **ids}
        await self.emit({**completed, "transcript": turn.say, "usage": usage})

    # --- responses -----------------------------------------------------------------------

    def _start_response(self, params: dict[str, Any]) -> None:
        if self.response is not None:
            raise ClientEventError(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {self.response.id}. "
                "Wait until the response is finished before creating a new one.",
            )
        in_conversation = params.get("conversation") != "none"
        tools = params.get("tools")
        if tools is None:
            tools = self.session.get("tools") or []
        tool_choice = params.get("tool_choice", self.session.get("tool_choice"))
        names = [] if tool_choice == "none" else [t.get("name") for t in tools if t.get("type") == "function"]
        outputs, source = plan_outputs(
            instructions=params.get("instructions"),
            pending_outputs=self.pending_outputs,
            turn=self.unanswered,
            had_user_turn=self.user_turns > 0,
            tool_names=names,
            greeting=self.state.scenario.greeting,
            out_of_band=not in_conversation,
        )
        if in_conversation and source in ("tool_output", "say_exactly"):
            self.pending_outputs.clear()  # an in-conversation response consumes the tool outputs
        elif source in ("reply", "tool_call", "no_tool"):
            self.unanswered = None
        configured, requested = self._audio("output"), (params.get("audio") or {}).get("output") or {}
        run = ResponseRun(
            outputs=outputs,
            emit=self.emit,
            conversation=self.conversation,
            speed=self.state.speed,
            in_conversation=in_conversation,
            output_format=requested.get("format") or configured.get("format") or DEFAULT_FORMAT,
            voice=requested.get("voice") or configured.get("voice") or "marin",
            metadata=params.get("metadata"),
            on_finished=self._response_finished,
            audio_out=self.caller is None,
        )
        self.response = run
        self._log.info("simulator.realtime.response_started", response_id=run.id, source=source)
        run.start()

    def _response_finished(self, run: ResponseRun) -> None:
        if self.response is run:
            self.response = None
        self.last_activity = asyncio.get_running_loop().time()
        if self.caller is not None:
            self.caller.response_finished(run)
        reason = run.cancel_reason
        self._log.info("simulator.realtime.response_finished", response_id=run.id, cancel_reason=reason)
