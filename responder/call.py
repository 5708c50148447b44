"""The per-call controller: the one place where the realtime responder and the supervisor meet.

It is transport-agnostic. A transport hands it a :class:`RealtimeConnection` and a
:class:`CallerLink` (how to play audio to the caller, clear it, hang up), feeds it caller audio
and mark echoes, and the controller does the rest: records the conversation in Redis in
conversation order, answers the supervisor tool call, handles barge-in at the heard position,
says a hold line when the supervisor is slow and a fallback when it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from responder.playback import PlaybackTracker
from responder.realtime.connection import RealtimeConnection
from responder.realtime.session import CONTEXT_ARG, SUPERVISOR_TOOL
from supervisor.decisions import Decision
from supervisor.history import APPEND, HEAD, CallHistory, HistoryItem

FALLBACK_TEXT = "I'm sorry, I can't confirm that right now. I can connect you with a colleague who can help."
HOLD_LINE_TEXT = "Still checking on that for you."
HOLD_LINE_INSTRUCTIONS = (
    f'Say exactly: "{HOLD_LINE_TEXT}" Nothing else. Do not answer the question yet '
    "and do not ask the caller anything."
)


# Tasks that outlive their call (a supervisor run whose caller hung up): referenced here so
# that they are not garbage-collected mid-flight.
_KEPT_TASKS: set[asyncio.Task[Any]] = set()


class CallerLink(Protocol):
    """The caller side of a call, as the controller sees it. Implemented by each transport."""

    async def send_audio(self, b64_audio: str, mark: str) -> None: ...

    async def clear_audio(self) -> None: ...


class DecideFn(Protocol):
    def __call__(
        self, call_id: str, context: str, *, user_item_id: str | None = None
    ) -> Awaitable[Decision]: ...


@dataclass(frozen=True)
class ControllerConfig:
    transcript_wait_s: float = 1.0
    hold_delay_s: float = 3.0
    max_hold_lines: int = 1
    supervisor_deadline_s: float = 10.0
    greeting: bool = True
    bytes_per_ms: float = 8.0  # audio/pcmu 8 kHz


@dataclass
class _Response:
    id: str
    purpose: str  # "turn", "greeting", "answer", "hold_line"


class CallController:
    def __init__(
        self,
        call_id: str,
        realtime: RealtimeConnection,
        caller: CallerLink,
        history: CallHistory,
        decide: DecideFn,
        config: ControllerConfig,
    ) -> None:
        self.call_id = call_id
        self.rt = realtime
        self.caller = caller
        self.history = history
        self.decide = decide
        self.config = config
        self.log = structlog.get_logger("call").bind(call_id=call_id)
        self.playback = PlaybackTracker(config.bytes_per_ms)
        self.closed = False
        self.started_at = time.monotonic()

        self._session_ready = False
        self._response: _Response | None = None
        self._requested: deque[str] = deque()  # purposes of response.create sent, not yet created
        self._server_response_due = 0.0  # monotonic deadline while VAD is about to create one
        self._user_speaking = False
        self._transcripts: dict[str, asyncio.Event] = {}
        self._last_user_item: str | None = None
        self._out_of_band: set[str] = set()  # item ids of hold lines (not in the conversation)
        self._interrupted: set[str] = set()
        self._pending_outputs: deque[tuple[str, str]] = deque()
        self._decision_items: dict[str, str] = {}  # tool call id → decision id
        self._changed = asyncio.Event()  # set whenever response/speech state changes
        self._tasks: set[asyncio.Task[Any]] = set()
        self._handlers: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {
            "session.updated": self._on_session_updated,
            "conversation.item.added": self._on_item_added,
            "conversation.item.created": self._on_item_added,
            "conversation.item.input_audio_transcription.completed": self._on_user_transcript,
            "conversation.item.input_audio_transcription.failed": self._on_user_transcript_failed,
            "input_audio_buffer.speech_started": self._on_speech_started,
            "input_audio_buffer.speech_stopped": self._on_speech_stopped,
            "response.created": self._on_response_created,
            "response.done": self._on_response_done,
            "response.output_audio.delta": self._on_audio_delta,
            "response.output_audio_transcript.delta": self._on_transcript_delta,
            "response.output_audio_transcript.done": self._on_assistant_transcript,
            "response.function_call_arguments.done": self._on_function_call,
            "conversation.item.truncated": self._on_truncated,
            "error": self._on_error,
        }

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self, session: dict[str, Any]) -> None:
        await self.rt.send({"type": "session.update", "session": session})

    async def run(self) -> None:
        """Process server events until the realtime socket closes or the call ends."""
        try:
            async for event in self.rt.events():
                handler = self._handlers.get(event.get("type", ""))
                if handler is None:
                    continue  # unknown or uninteresting events are ignored, never fatal
                try:
                    await handler(event)
                except Exception:
                    self.log.exception("call.event_handler_failed", event_type=event.get("type"))
                if self.closed:
                    break
        finally:
            await self.close()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for task in list(self._tasks):
            task.cancel()
        duration = round(time.monotonic() - self.started_at, 3)
        try:
            await self.history.set_meta(
                self.call_id, status="ended", ended_at=time.time(), duration_s=duration
            )
        except Exception as exc:
            self.log.error("call.end_not_recorded", error=repr(exc))
        self.log.info("call.ended", duration_s=duration)
        t0 = time.monotonic()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.rt.close(), 2.0)
        self.log.info("call.realtime_closed", ms=round((time.monotonic() - t0) * 1000, 1))

    def _spawn(self, coro: Awaitable[Any], name: str, *, keep: bool = False) -> None:
        """Run ``coro`` as a task; ``keep`` tasks survive the call's end, others are cancelled."""
        task = asyncio.ensure_future(coro)
        task.set_name(f"{name}:{self.call_id}")
        tasks = _KEPT_TASKS if keep else self._tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    # -- from the caller side ------------------------------------------------------------
    async def caller_audio(self, b64_audio: str) -> None:
        if self._session_ready and not self.closed:
            await self.rt.append_audio(b64_audio)

    def caller_mark(self, name: str) -> None:
        if self.playback.on_mark(name):
            self._notify()

    async def caller_dtmf(self, digit: str) -> None:
        item = HistoryItem(id=f"dtmf_{time.time_ns()}", kind="dtmf", role="user", text=digit)
        await self.history.add_item(self.call_id, item, APPEND)
        self.log.info("call.dtmf", digit=digit)

    # -- realtime server events ----------------------------------------------------------
    async def _on_session_updated(self, event: dict[str, Any]) -> None:
        if self._session_ready:
            return
        self._session_ready = True
        self.log.info("call.session_ready")
        if self.config.greeting:
            await self._request_response("greeting", {})

    async def _on_item_added(self, event: dict[str, Any]) -> None:
        item = event.get("item") or {}
        item_id = item.get("id")
        if not item_id:
            return
        prev = event.get("previous_item_id")
        where = prev if prev else (HEAD if "previous_item_id" in event else APPEND)
        kind = item.get("type")
        record: HistoryItem | None = None
        if kind == "message" and item.get("role") in ("user", "assistant"):
            role = item["role"]
            text = _content_text(item)
            record = HistoryItem(
                id=item_id,
                kind="message",
                role=role,
                text=text,
                status="completed" if (role == "user" and text) else "in_progress",
            )
            if role == "user":
                self._last_user_item = item_id
                self._transcripts.setdefault(item_id, asyncio.Event())
                if text:
                    self._transcripts[item_id].set()
        elif kind == "function_call":
            record = HistoryItem(
                id=item_id,
                kind="function_call",
                role="assistant",
                name=item.get("name"),
                call_id=item.get("call_id"),
                arguments=item.get("arguments") or None,
                status="in_progress",
            )
        elif kind == "function_call_output":
            # our own item: shown right after the decision that produced it
            where = self._decision_items.pop(item.get("call_id", ""), where)
            record = HistoryItem(
                id=item_id,
                kind="function_call_output",
                role="system",
                call_id=item.get("call_id"),
                output=item.get("output"),
            )
        if record is not None:
            await self.history.add_item(self.call_id, record, where)

    async def _on_user_transcript(self, event: dict[str, Any]) -> None:
        item_id = event.get("item_id", "")
        text = (event.get("transcript") or "").strip()
        await self.history.update_item(self.call_id, item_id, text=text, status="completed")
        self._transcripts.setdefault(item_id, asyncio.Event()).set()
        self.log.info("call.user_turn", item_id=item_id, text=text)

    async def _on_user_transcript_failed(self, event: dict[str, Any]) -> None:
        item_id = event.get("item_id", "")
        await self.history.update_item(self.call_id, item_id, status="failed")
        self._transcripts.setdefault(item_id, asyncio.Event()).set()
        self.log.warning("call.user_transcript_failed", item_id=item_id, error=event.get("error"))

    async def _on_speech_started(self, event: dict[str, Any]) -> None:
        self._user_speaking = True
        self._notify()
        item_id = self.playback.current_item
        if not self.playback.is_playing() or item_id is None:
            return
        heard = self.playback.heard_ms(item_id)
        await self.caller.clear_audio()
        heard_text = self.playback.heard_text(item_id)
        self.playback.clear()
        self.log.info(
            "call.barge_in", item_id=item_id, audio_end_ms=heard, sent_ms=self.playback.sent_ms(item_id)
        )
        if item_id in self._out_of_band:
            return  # a hold line is not in the conversation: nothing to truncate
        self._interrupted.add(item_id)
        await self.rt.send(
            {
                "type": "conversation.item.truncate",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": heard,
            }
        )
        await self.history.update_item(
            self.call_id, item_id, text=heard_text, status="interrupted", audio_end_ms=heard
        )

    async def _on_speech_stopped(self, event: dict[str, Any]) -> None:
        self._user_speaking = False
        self._notify()
        self._server_response_due = time.monotonic() + 2.0  # VAD creates a response next

    async def _on_response_created(self, event: dict[str, Any]) -> None:
        response = event.get("response") or {}
        tagged = (response.get("metadata") or {}).get("purpose")
        requested = None
        if self._requested and (tagged is None or tagged == self._requested[0]):
            requested = self._requested.popleft()
        purpose = tagged or requested or "turn"
        if purpose == "turn":
            self._server_response_due = 0.0
        self._response = _Response(id=response.get("id", ""), purpose=purpose)
        self._notify()

    async def _on_response_done(self, event: dict[str, Any]) -> None:
        response = event.get("response") or {}
        if response.get("status") not in (None, "completed"):
            self.log.info(
                "call.response_ended",
                status=response.get("status"),
                reason=(response.get("status_details") or {}).get("reason"),
            )
        self._response = None
        self._notify()
        await self._flush_outputs()

    async def _on_audio_delta(self, event: dict[str, Any]) -> None:
        """Hot path: relay the base64 audio untouched, followed by a mark."""
        delta = event.get("delta")
        item_id = event.get("item_id")
        if not delta or not item_id:
            return
        if item_id in self._interrupted:
            return  # cancelled audio still in flight: the caller must not hear it
        if self._response is not None and self._response.purpose == "hold_line":
            self._out_of_band.add(item_id)
        mark = self.playback.sent(item_id, delta)
        await self.caller.send_audio(delta, mark)

    async def _on_transcript_delta(self, event: dict[str, Any]) -> None:
        item_id = event.get("item_id")
        if item_id:
            self.playback.note_transcript(item_id, event.get("delta", ""))

    async def _on_assistant_transcript(self, event: dict[str, Any]) -> None:
        item_id = event.get("item_id", "")
        text = (event.get("transcript") or "").strip()
        purpose = self._response.purpose if self._response else "turn"
        if purpose == "hold_line" or item_id in self._out_of_band:
            self._out_of_band.add(item_id)
            await self.history.add_item(
                self.call_id, HistoryItem(id=item_id, kind="hold_line", role="assistant", text=text), APPEND
            )
            self.log.info("call.hold_line", item_id=item_id, text=text)
            return
        if item_id in self._interrupted:
            await self.history.update_item(self.call_id, item_id, full_text=text)
            return
        await self.history.update_item(self.call_id, item_id, text=text, status="completed")
        self.log.info("call.assistant_turn", item_id=item_id, text=text, purpose=purpose)

    async def _on_truncated(self, event: dict[str, Any]) -> None:
        self.log.debug("call.truncated", item_id=event.get("item_id"), audio_end_ms=event.get("audio_end_ms"))

    async def _on_error(self, event: dict[str, Any]) -> None:
        error = event.get("error") or {}
        client_event_id = error.get("event_id")
        sent_type = self.rt.sent_type(client_event_id)
        self.log.warning(
            "realtime.error",
            code=error.get("code"),
            error_type=error.get("type"),
            message=error.get("message"),
            param=error.get("param"),
            client_event_id=client_event_id,
            client_event_type=sent_type,
        )
        if sent_type == "response.create" and self._requested:
            self._requested.popleft()  # the response we asked for will not come
            await self._flush_outputs()

    # -- the supervisor tool -------------------------------------------------------------
    async def _on_function_call(self, event: dict[str, Any]) -> None:
        name = event.get("name")
        fc_call_id = event.get("call_id", "")
        arguments = event.get("arguments") or ""
        if event.get("item_id"):
            await self.history.update_item(
                self.call_id, event["item_id"], arguments=arguments, status="completed"
            )
        self.log.info("call.tool_call", tool=name, tool_call_id=fc_call_id, arguments=arguments)
        if name != SUPERVISOR_TOOL:
            self.log.warning("call.tool_unknown", tool=name)
            self._queue_output(fc_call_id, json.dumps({"error": f"unknown tool {name!r}"}))
            await self._flush_outputs()
            return
        context = _context_from_arguments(arguments)
        if context is None:
            self.log.warning("call.tool_arguments_invalid", tool=name, arguments=arguments[:200])
            context = ""
        # Not cancelled at hang-up: the decision is still recorded for the audit trail,
        # and its late result is dropped (see _ask_supervisor). Bounded by the deadline.
        self._spawn(self._ask_supervisor(fc_call_id, context, self._last_user_item), "supervisor", keep=True)

    async def _ask_supervisor(self, fc_call_id: str, context: str, user_item: str | None) -> None:
        if user_item is not None:
            pending = self._transcripts.setdefault(user_item, asyncio.Event())
            try:
                await asyncio.wait_for(pending.wait(), self.config.transcript_wait_s)
            except TimeoutError:
                self.log.info("call.transcript_wait_expired", item_id=user_item)
        if not context and user_item is not None:
            item = await self.history.get_item(self.call_id, user_item)
            context = (item.text or "") if item else ""
        hold = asyncio.ensure_future(self._hold_lines())
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.config.supervisor_deadline_s + 2.0):
                decision = await self.decide(self.call_id, context, user_item_id=user_item)
            text, outcome = decision.text, decision.outcome
            self._decision_items[fc_call_id] = decision.decision_id
        except Exception as exc:  # the supervisor records its own failures; this is the last net
            text, outcome = FALLBACK_TEXT, "error"
            self.log.error("call.supervisor_failed", error=repr(exc))
        finally:
            hold.cancel()
        if outcome != "ok":
            self.log.warning("call.fallback", outcome=outcome)
        self.log.info(
            "call.supervisor_answer",
            tool_call_id=fc_call_id,
            outcome=outcome,
            ms=round((time.monotonic() - started) * 1000, 1),
        )
        if self.closed:
            self.log.info("call.late_result_dropped", tool_call_id=fc_call_id)
            return
        self._queue_output(fc_call_id, text)
        await self._flush_outputs()

    async def _hold_lines(self) -> None:
        """Say a short hold line if the supervisor is slow; never over the caller or a response."""
        for _ in range(self.config.max_hold_lines):
            await asyncio.sleep(self.config.hold_delay_s)
            await self._until_quiet()
            if self.closed:
                return
            await self._request_response(
                "hold_line",
                {
                    "conversation": "none",
                    "output_modalities": ["audio"],
                    "instructions": HOLD_LINE_INSTRUCTIONS,
                },
            )

    async def _until_quiet(self) -> None:
        """Wait until nothing is being said or played, by the caller or the responder."""
        while not self.closed and (not self._idle() or self.playback.is_playing()):
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                # marks and the VAD grace window change state without an event: re-check often
                await asyncio.wait_for(self._changed.wait(), 0.05)

    def _notify(self) -> None:
        self._changed.set()

    # -- sending answers, never over an active response ----------------------------------
    def _idle(self) -> bool:
        return (
            self._response is None
            and not self._requested
            and not self._user_speaking
            and time.monotonic() >= self._server_response_due
        )

    def _queue_output(self, fc_call_id: str, output: str) -> None:
        self._pending_outputs.append((fc_call_id, output))

    async def _flush_outputs(self) -> None:
        if not self._pending_outputs or self.closed:
            return
        if not self._idle():
            # Blocked by a response, a request or the caller speaking: the events that end
            # those call us again. Only the VAD grace window needs a timer.
            if self._server_response_due > time.monotonic():
                self._spawn(self._flush_later(), "flush")
            return
        while self._pending_outputs:
            fc_call_id, output = self._pending_outputs.popleft()
            await self.rt.send(
                {
                    "type": "conversation.item.create",
                    "item": {"type": "function_call_output", "call_id": fc_call_id, "output": output},
                }
            )
        await self._request_response("answer", {})

    async def _flush_later(self) -> None:
        """Retry a deferred flush once the expected VAD response window has passed."""
        await asyncio.sleep(max(0.0, self._server_response_due - time.monotonic()) + 0.01)
        await self._flush_outputs()

    async def _request_response(self, purpose: str, response: dict[str, Any]) -> None:
        self._requested.append(purpose)
        body = {**response, "metadata": {"purpose": purpose}}
        await self.rt.send({"type": "response.create", "response": body})


def _content_text(item: dict[str, Any]) -> str | None:
    for part in item.get("content") or []:
        text = part.get("transcript") or part.get("text")
        if text:
            return str(text)
    return None


def _context_from_arguments(arguments: str) -> str | None:
    """The supervisor context from the tool's JSON arguments; None when they are invalid."""
    try:
        parsed = json.loads(arguments) if arguments else {}
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    value = parsed.get(CONTEXT_ARG, "")
    return value if isinstance(value, str) else None
