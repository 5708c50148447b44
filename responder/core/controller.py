"""The per-call controller: the one place where the realtime responder and the supervisor meet.

It is transport-agnostic. A transport hands it a :class:`RealtimeConnection` and a
:class:`CallerLink` (how to play audio to the caller and clear it), feeds it caller audio,
mark echoes and DTMF, and the controller does the rest: records the conversation (through
:class:`~responder.core.recorder.TranscriptRecorder`), answers the supervisor tool call, handles
barge-in at the heard position, says a hold line when the supervisor is slow and a fallback
when it fails, and never starts a response while another one is active.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from redis.exceptions import RedisError

from callrecord.decisions import worst_outcome
from callrecord.history import CallHistory
from infra import metrics
from responder.core.action_runner import ActionRunner
from responder.core.actions import ACTION_TOOLS, ActionName, CallActions, string_argument
from responder.core.contract import (
    _KEPT_TASKS,
    CallerLink,
    ControllerConfig,
    DecideFn,
    finish_kept_tasks,
)
from responder.core.end_reason import unstated_reason
from responder.core.playback import PlaybackTracker
from responder.core.recorder import TranscriptRecorder
from responder.core.responses import ResponseTracker
from responder.engines.realtime.connection import RealtimeConnection
from responder.engines.realtime.event_shape import shape_problem
from responder.engines.realtime.reconnect import resume_controller
from responder.engines.realtime.session import CONTEXT_ARG, SUPERVISOR_TOOL
from supervisor.agent import FALLBACK_TEXT
from supervisor.observe import observe_decision

HOLD_LINE_TEXT = "Still checking on that for you."
HOLD_LINE_INSTRUCTIONS = (
    f'Say exactly: "{HOLD_LINE_TEXT}" Nothing else. Do not answer the question yet '
    "and do not ask the caller anything."
)
MAX_ANSWER_ATTEMPTS = 3
CLOSE_WRITES_WAIT_S = 3.0  # history writes still queued when the call ends

__all__ = [
    "FALLBACK_TEXT",
    "CallController",
    "CallerLink",
    "ControllerConfig",
    "DecideFn",
    "finish_kept_tasks",
]


class CallController:
    def __init__(
        self,
        call_id: str,
        realtime: RealtimeConnection,
        caller: CallerLink,
        history: CallHistory,
        decide: DecideFn,
        config: ControllerConfig,
        actions: CallActions | None = None,
    ) -> None:
        self.call_id = call_id
        self.actions = actions
        self.rt = realtime
        self.caller = caller
        self.history = history
        self.decide = decide
        self.config = config
        self.log = structlog.get_logger("call").bind(call_id=call_id)
        self.playback = PlaybackTracker(config.bytes_per_ms)
        self.responses = ResponseTracker()
        self.recorder = TranscriptRecorder(call_id, history, self.log)
        self.closed = False
        self.started_at = time.monotonic()
        self.outcomes: list[str] = []  # supervisor outcomes, for the call's metric outcome
        self._speech_stopped_at: float | None = None  # → first assistant audio (metric)
        metrics.ACTIVE_CALLS.labels(transport=config.transport).inc()

        self._session_ready = False
        self._user_speaking = False
        self._pending_outputs: deque[tuple[str, str]] = deque()
        self._answer_due = False
        self._answer_attempts = 0
        self._cancelled_tool_calls: set[str] = set()
        self._answer_purpose: tuple[str, dict[str, Any]] = ("answer", {})
        self.action_runner = ActionRunner(
            call_id, transport=config.transport, actions=actions, recorder=self.recorder, log=self.log,
            remote_ms_per_char=config.remote_ms_per_char if config.sideband else None,
        )  # fmt: skip
        self._changed = asyncio.Event()  # set whenever response/speech/playback state changes
        self._tasks: set[asyncio.Task[Any]] = set()
        self._handlers: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {
            "session.updated": self._on_session_updated,
            "conversation.item.added": self.recorder.item_added,
            "conversation.item.created": self.recorder.item_added,
            "conversation.item.input_audio_transcription.completed": self.recorder.user_transcript,
            "conversation.item.input_audio_transcription.failed": self.recorder.user_transcript_failed,
            "conversation.item.truncated": self.recorder.truncated_by_server,
            "input_audio_buffer.dtmf_event_received": self._on_sip_dtmf,
            "input_audio_buffer.speech_started": self._on_speech_started,
            "input_audio_buffer.speech_stopped": self._on_speech_stopped,
            "response.created": self._on_response_created,
            "response.done": self._on_response_done,
            "response.output_audio.delta": self._on_audio_delta,
            "response.output_audio_transcript.delta": self._on_transcript_delta,
            "response.output_audio_transcript.done": self._on_assistant_transcript,
            "response.function_call_arguments.done": self._on_function_call,
            "error": self._on_error,
        }

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self, session: dict[str, Any]) -> None:
        await self.rt.send({"type": "session.update", "session": session})

    async def run(self) -> None:
        """Process server events until the realtime socket closes or the call ends."""
        try:
            await self.pump()
        finally:
            await self.close()

    async def pump(self) -> None:
        """Process this session's server events until its socket closes or the call ends
        (the call stays open: :mod:`responder.engines.realtime.reconnect` may resume it)."""
        async for event in self.rt.events():
            kind = event.get("type")
            handler = self._handlers.get(kind) if isinstance(kind, str) else None
            if handler is None:
                continue  # unknown or uninteresting events are ignored, never fatal
            problem = shape_problem(event)
            if problem is not None:  # a field of the wrong type: skipped, not half-handled
                self.log.warning("realtime.event_invalid", event_type=kind, problem=problem)
                continue
            try:
                await handler(event)
            except Exception as exc:
                self.log.exception("call.event_handler_failed", event_type=event.get("type"))
                if isinstance(exc, RedisError):
                    metrics.REDIS_ERRORS.labels(operation=str(event.get("type"))[:60]).inc()
            if self.closed:
                break

    async def resume(self, rt: RealtimeConnection, session: dict[str, Any]) -> int:
        """Continue the call on a new Realtime session after its socket dropped: the history is
        replayed and the answer due is asked for again. Returns the number of items replayed."""
        return await resume_controller(self, rt, session)

    async def close(self, reason: str | None = None) -> None:
        """End the call (idempotent: the first reason wins; see responder/end_reason.py)."""
        if self.closed:
            return
        self.closed = True
        record = self.action_runner.record
        end_reason = reason or unstated_reason(
            sideband=self.config.sideband,
            action=record.action if record is not None else None,
            action_reason=record.reason if record is not None else None,
        )
        self._notify()
        self.action_runner.call_closed()
        for task in list(self._tasks):
            task.cancel()
        duration = round(time.monotonic() - self.started_at, 3)
        await self.recorder.lane.aclose(CLOSE_WRITES_WAIT_S)  # the transcript first, then its end
        try:
            await self.history.set_meta(
                self.call_id, status="ended", ended_at=time.time(), duration_s=duration,
                end_reason=end_reason,
            )  # fmt: skip
        except Exception as exc:
            self.log.error("call.end_not_recorded", error=repr(exc))
            metrics.REDIS_ERRORS.labels(operation="set_meta").inc()
        outcome = worst_outcome(self.outcomes)
        self.log.info("call.ended", duration_s=duration, outcome=outcome, end_reason=end_reason)
        metrics.call_ended(self.config.transport, outcome)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.rt.close(), 2.0)

    def _spawn(self, coro: Awaitable[Any], name: str, *, keep: bool = False) -> None:
        """Run ``coro`` as a task; ``keep`` tasks survive the call's end, others are cancelled."""
        task = asyncio.ensure_future(coro)
        task.set_name(f"{name}:{self.call_id}")
        tasks = _KEPT_TASKS if keep else self._tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def _notify(self) -> None:
        self._changed.set()

    # -- from the caller side ------------------------------------------------------------
    async def caller_audio(self, b64_audio: str) -> None:
        if self._session_ready and not self.closed:
            await self.rt.append_audio(b64_audio)

    def caller_mark(self, name: str) -> None:
        if self.playback.on_mark(name):
            self._notify()

    async def caller_dtmf(self, digit: str) -> None:
        await self.recorder.dtmf(digit)

    async def _on_sip_dtmf(self, event: dict[str, Any]) -> None:
        """SIP keypad presses arrive as a server event (Twilio's come from the transport)."""
        digit = event.get("event")
        if isinstance(digit, str) and len(digit) == 1 and digit in "0123456789*#ABCD":
            await self.recorder.dtmf(digit)

    # -- realtime server events ----------------------------------------------------------
    async def _on_session_updated(self, event: dict[str, Any]) -> None:
        if self._session_ready:
            return
        self._session_ready = True
        self.log.info("call.session_ready")
        if self.config.greeting:
            await self._request_response("greeting", {})

    async def _on_speech_started(self, event: dict[str, Any]) -> None:
        """Barge-in: silence what is playing and truncate it where the caller stopped hearing it."""
        self._user_speaking = True
        self._notify()
        active = self.responses.active
        if active is not None:
            self.responses.interrupted.add(active.id)  # drop its audio still in flight
            if active.purpose == "hold_line":
                # turn detection may or may not cancel an out-of-band response: make sure
                self._spawn(self._cancel_if_still_active(active.id), "cancel")
        item_id = self.playback.current_item
        if item_id is None or not self.playback.is_playing():
            return
        heard = self.playback.heard_ms(item_id)
        await self.caller.clear_audio()
        heard_text, full_text = self.playback.heard_text(item_id), self.playback.full_text(item_id)
        self.playback.clear()
        self.log.info(
            "call.barge_in", item_id=item_id, audio_end_ms=heard, sent_ms=self.playback.sent_ms(item_id),
            heard_text=heard_text, full_text=full_text,
        )  # fmt: skip
        if item_id in self.recorder.out_of_band:
            return  # a hold line is not in the conversation: nothing to truncate
        await self.rt.send(
            {
                "type": "conversation.item.truncate",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": heard,
            }
        )
        await self.recorder.interrupted_at(item_id, heard, heard_text, full_text)

    async def _cancel_if_still_active(self, response_id: str, grace_s: float = 0.3) -> None:
        await asyncio.sleep(grace_s)
        active = self.responses.active
        if active is not None and active.id == response_id:
            await self.rt.send({"type": "response.cancel", "response_id": response_id})

    async def _on_speech_stopped(self, event: dict[str, Any]) -> None:
        self._user_speaking = False
        self._speech_stopped_at = time.monotonic()
        self.responses.speech_stopped()
        self._notify()
        await self._flush_outputs()  # an answer queued while the caller spoke waits for the window

    async def _on_response_created(self, event: dict[str, Any]) -> None:
        response = event.get("response") or {}
        tag = (response.get("metadata") or {}).get("purpose")
        self.responses.created(response.get("id", ""), tag)
        self._notify()

    async def _on_response_done(self, event: dict[str, Any]) -> None:
        response = event.get("response") or {}
        metrics.observe_realtime_usage(self.config.realtime_model, response.get("usage"))
        status = response.get("status")
        finished = self.responses.done(response.get("id", ""))
        self._notify()
        if status != "completed":
            reason = (response.get("status_details") or {}).get("reason")
            self.log.info("call.response_ended", status=status, reason=reason)
        if finished is not None and status == "cancelled":
            self._cancelled_tool_calls.update(finished.tool_calls)
        if finished is not None and finished.purpose == "answer":
            # cancelled = the caller spoke over it: their new turn gets its own response
            self._answer_due = status not in ("completed", "cancelled")
        if finished is not None and finished.purpose == "action_line":
            self._answer_due = False
            self._spawn(self.action_runner.perform(self), "action", keep=True)
        await self._flush_outputs()

    async def _on_audio_delta(self, event: dict[str, Any]) -> None:
        """Hot path: relay the base64 audio untouched, followed by a mark."""
        delta = event.get("delta")
        item_id = event.get("item_id")
        if not delta or not item_id or event.get("response_id") in self.responses.interrupted:
            return
        if item_id in self.recorder.interrupted:
            return
        active = self.responses.active
        if active is not None and active.purpose == "hold_line":
            self.recorder.out_of_band.add(item_id)
        if self._speech_stopped_at is not None:
            metrics.RESPONSE_LATENCY.observe(time.monotonic() - self._speech_stopped_at)
            self._speech_stopped_at = None
        mark = self.playback.sent(item_id, delta)
        await self.caller.send_audio(delta, mark)

    async def _on_transcript_delta(self, event: dict[str, Any]) -> None:
        item_id = event.get("item_id")
        if item_id:
            self.playback.note_transcript(item_id, event.get("delta", ""))

    async def _on_assistant_transcript(self, event: dict[str, Any]) -> None:
        active = self.responses.active
        purpose = active.purpose if active else "turn"
        await self.recorder.assistant_transcript(
            event.get("item_id", ""), (event.get("transcript") or "").strip(), purpose
        )

    async def _on_error(self, event: dict[str, Any]) -> None:
        error = event.get("error") or {}
        client_event_id = error.get("event_id")
        metrics.realtime_error(error.get("code"))
        self.log.warning(
            "realtime.error",
            code=error.get("code"),
            error_type=error.get("type"),
            message=error.get("message"),
            param=error.get("param"),
            client_event_id=client_event_id,
            client_event_type=self.rt.sent_type(client_event_id),
        )
        if self.responses.rejected(client_event_id) is not None:
            self._notify()
            await self._flush_outputs()  # an answer that was refused is asked for again

    # -- the supervisor tool -------------------------------------------------------------
    async def _on_function_call(self, event: dict[str, Any]) -> None:
        name = event.get("name")
        tool_call_id = event.get("call_id", "")
        arguments = event.get("arguments") or ""
        await self.recorder.function_call_done(event.get("item_id"), arguments)
        active = self.responses.active
        self.log.info("call.tool_call", tool=name, tool_call_id=tool_call_id, arguments=arguments)
        if active is not None and active.purpose == "hold_line":
            self.log.warning("call.tool_call_ignored", tool=name, reason="called from a hold line")
            return
        if active is not None:
            active.tool_calls.append(tool_call_id)
        if name in ACTION_TOOLS:
            await self._on_action_tool(name, tool_call_id, arguments)  # type: ignore[arg-type]
            return
        if name != SUPERVISOR_TOOL:
            self.log.warning("call.tool_unknown", tool=name)
            self._queue_output(tool_call_id, json.dumps({"error": f"unknown tool {name!r}"}))
            await self._flush_outputs()
            return
        context = _context_from_arguments(arguments)
        if context is None:
            self.log.warning("call.tool_arguments_invalid", tool=name, arguments=arguments[:200])
            context = ""
        # Not cancelled at hang-up: the decision is still recorded for the audit trail and
        # its late result dropped (see _ask_supervisor). Bounded by the supervisor deadline.
        user_item = self.recorder.last_user_item
        self._spawn(self._ask_supervisor(tool_call_id, context, user_item), "supervisor", keep=True)

    async def _ask_supervisor(self, tool_call_id: str, context: str, user_item: str | None) -> None:
        if user_item is not None:
            try:
                await asyncio.wait_for(
                    self.recorder.transcript_ready(user_item).wait(), self.config.transcript_wait_s
                )
            except TimeoutError:
                self.log.info("call.transcript_wait_expired", item_id=user_item)
            await self.recorder.flush(self.config.transcript_wait_s)  # the supervisor reads it all
            if not context:  # invalid or empty arguments: fall back on what the caller said
                try:
                    item = await self.history.get_item(self.call_id, user_item)
                except RedisError as exc:  # the tool call must still get its answer
                    self.log.warning("call.context_unavailable", item_id=user_item, error=repr(exc))
                    item = None
                context = (item.text or "") if item else ""
        hold = asyncio.ensure_future(self._hold_lines())
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.config.supervisor_deadline_s + 2.0):
                decision = await self.decide(self.call_id, context, user_item_id=user_item)
            text, outcome = decision.text, decision.outcome
            observe_decision(decision)
            self.recorder.anchor_output(tool_call_id, decision.decision_id)
        except Exception as exc:  # the supervisor records its own failures; this is the last net
            text, outcome = FALLBACK_TEXT, "error"
            self.log.error("call.supervisor_failed", error=repr(exc))
        finally:
            hold.cancel()
        ms = round((time.monotonic() - started) * 1000, 1)
        self.log.info("call.supervisor_answer", tool_call_id=tool_call_id, outcome=outcome, ms=ms)
        self.outcomes.append(outcome)
        if outcome != "ok":
            self.log.warning("call.fallback", tool_call_id=tool_call_id, outcome=outcome)
            metrics.FALLBACKS.labels(outcome=outcome).inc()
        if self.closed or tool_call_id in self._cancelled_tool_calls:
            reason = "call ended" if self.closed else "response cancelled"
            self.log.info("call.late_result_dropped", tool_call_id=tool_call_id, reason=reason)
            return
        self._queue_output(tool_call_id, text)
        await self._flush_outputs()

    async def _hold_lines(self) -> None:
        """Say a short hold line if the supervisor is slow; never over the caller or a response."""
        for _ in range(self.config.max_hold_lines):
            await asyncio.sleep(self.config.hold_delay_s)
            await self._until_quiet()
            if self.closed:
                return
            hold = {
                "conversation": "none",
                "output_modalities": ["audio"],
                "instructions": HOLD_LINE_INSTRUCTIONS,
                "tools": [],
                "tool_choice": "none",
            }
            metrics.HOLD_LINES.inc()
            await self._request_response("hold_line", hold)

    async def _until_quiet(self) -> None:
        """Wait until nothing is being said or played, by the caller or the responder."""
        await self._until(self._quiet)

    async def until_silent(self) -> None:
        """Wait until the responder has finished speaking and the caller has heard it."""
        await self._until(lambda: self.responses.active is None and not self.playback.is_playing())

    async def _until(self, condition: Callable[[], bool]) -> None:
        while not self.closed and not condition():
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                # the turn-detection grace window ends without an event: re-check now and then
                await asyncio.wait_for(self._changed.wait(), 0.1)

    def _quiet(self) -> bool:
        return self.responses.idle() and not self._user_speaking and not self.playback.is_playing()

    # -- call-control tools (escalate_to_human, end_call) ---------------------------------
    async def _on_action_tool(self, name: ActionName, tool_call_id: str, arguments: str) -> None:
        requested = self.action_runner.request(name, tool_call_id, arguments)
        if requested is None:
            return
        output, line_response = requested
        self._queue_output(tool_call_id, output)
        self._answer_purpose = ("action_line", line_response)
        self._spawn(self.action_runner.perform_later(self), "action-watchdog", keep=True)
        await self._flush_outputs()

    async def end_with_line(self, reason: str, line: str, within_s: float) -> None:
        """The service ends the call itself (drain): what is being said may finish, then
        ``line`` is said and the call hung up like ``end_call``, all within ``within_s``."""
        body = None if self.closed else self.action_runner.request_by_service(reason, line)
        if body is None:
            return
        self._spawn(self.action_runner.perform_later(self, within_s), "action-watchdog", keep=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._until_quiet(), within_s / 3)
        active = self.responses.active
        if active is not None:
            await self.rt.send({"type": "response.cancel", "response_id": active.id})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._until(self.responses.idle), 1.0)
        if not self.closed:
            # due until said: a Realtime reconnect in between asks for it again (reconnect.py)
            self._answer_purpose, self._answer_due = ("action_line", body), True
            await self._request_response("action_line", body)

    # -- sending answers, never over an active response ----------------------------------
    def _queue_output(self, tool_call_id: str, output: str) -> None:
        self._pending_outputs.append((tool_call_id, output))

    async def _flush_outputs(self) -> None:
        """Send queued tool outputs and ask for the answer, once no response can collide."""
        if self.closed or not (self._pending_outputs or self._answer_due):
            return
        if not self.responses.idle() or self._user_speaking:
            # The events that end a response or a caller's turn call us again; only the
            # turn-detection grace window needs a timer.
            if self.responses.grace_remaining() > 0:
                self._spawn(self._flush_later(self.responses.grace_remaining()), "flush")
            return
        if self._pending_outputs:
            self._answer_attempts = 0
        while self._pending_outputs:
            tool_call_id, output = self._pending_outputs.popleft()
            item = {"type": "function_call_output", "call_id": tool_call_id, "output": output}
            await self.rt.send({"type": "conversation.item.create", "item": item})
        if self._answer_attempts >= MAX_ANSWER_ATTEMPTS:
            self.log.error("call.answer_not_spoken", attempts=self._answer_attempts)
            self._answer_due = False
            return
        self._answer_attempts += 1
        self._answer_due = True
        await self._request_response(*self._answer_purpose)

    async def _flush_later(self, delay: float) -> None:
        await asyncio.sleep(delay + 0.01)
        await self._flush_outputs()

    async def _request_response(self, purpose: str, response: dict[str, Any]) -> None:
        body = {**response, "metadata": {"purpose": purpose}}
        event_id = self.rt.new_event_id()
        # registered before sending: response.created may be handled while send() awaits
        self.responses.request_sent(event_id, purpose)
        await self.rt.send({"type": "response.create", "event_id": event_id, "response": body})


def _context_from_arguments(arguments: str) -> str | None:
    """The supervisor context from the tool's JSON arguments; None when they are invalid."""
    return string_argument(arguments, CONTEXT_ARG)
