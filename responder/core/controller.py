"""The per-call controller: the one place where the speech engine and the supervisor meet.

It is transport- and engine-agnostic. A transport hands it an :class:`~responder.core.engine.Engine`
and a :class:`CallerLink` (how to play audio to the caller and clear it), feeds it caller
audio, mark echoes and DTMF, and the controller does the rest: records the conversation
(through :class:`~responder.core.recorder.TranscriptRecorder`), answers hand-overs with the
supervisor (:mod:`responder.core.handover`), handles barge-in at the heard position, says a
hold line when the supervisor is slow and a fallback when it fails, never asks for a reply
while another one is active, and carries the call over to a new session after a drop
(:meth:`CallController.resume`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial
from typing import Any

import structlog
from redis.exceptions import RedisError

from callrecord.decisions import worst_outcome
from callrecord.history import CallHistory
from infra import metrics
from responder.core import agent_audio, barge_in
from responder.core import engine as ev
from responder.core.action_runner import ActionRunner
from responder.core.actions import ACTION_TOOLS, ActionName, CallActions, string_argument
from responder.core.contract import CallerLink, ControllerConfig, DecideFn, keep_task
from responder.core.end_reason import unstated_reason
from responder.core.engine import ACTION_LINE, ANSWER, GREETING, HOLD_LINE, Engine, Line, Purpose
from responder.core.handover import ask_supervisor
from responder.core.parked import ParkedEngine
from responder.core.playback import PlaybackTracker
from responder.core.recorder import TranscriptRecorder
from responder.core.responses import ResponseTracker
from responder.core.resume import give_up_lost_transcripts, settle_cut_off_item, short, unrecorded_answers
from responder.core.short_steps import in_short_steps
from responder.core.tools import CONTEXT_ARG, SUPERVISOR_TOOL
from supervisor.agent import FALLBACK_TEXT

HOLD_LINE_TEXT = "Still checking on that for you."
HOLD = Line(
    HOLD_LINE_TEXT, out_of_band=True,
    guidance="Do not answer the question yet and do not ask the caller anything.",
)  # fmt: skip
MAX_ANSWER_ATTEMPTS = 3
CLOSE_WRITES_WAIT_S = 3.0  # history writes still queued when the call ends
REPLAY_WRITES_WAIT_S = 2.0  # history writes of the dead session still queued at a resume
RESUME_READ_ITEMS = 200  # history read for a resume (the engine replays the newest of them)

__all__ = ["FALLBACK_TEXT", "HOLD_LINE_TEXT", "CallController", "CallerLink", "ControllerConfig", "DecideFn"]

Handler = Callable[[Any], Awaitable[None]]


class CallController:
    def __init__(
        self, call_id: str, engine: Engine, caller: CallerLink, history: CallHistory,
        decide: DecideFn, config: ControllerConfig, actions: CallActions | None = None,
    ) -> None:  # fmt: skip
        self.call_id = call_id
        self.actions = actions
        self.engine: Engine = engine
        self._audio_to: Engine = engine  # the parked engine until a resume has replayed its audio
        self.caller = caller
        self.history = history
        self.decide = decide
        self.config = config
        self.log = structlog.get_logger("call").bind(call_id=call_id)
        self.playback = PlaybackTracker(config.bytes_per_ms, config.mark_interval_ms)
        self._cleared: barge_in.Cleared | None = None  # a barge-in's clear the engine's watch sent
        self._watch(engine)
        self.responses = ResponseTracker()
        self.recorder = TranscriptRecorder(
            call_id, history, self.log, config.dtmf_rate_per_s, config.dtmf_burst
        )
        self.closed = False
        self._closing: asyncio.Future[None] | None = None
        self.started_at = time.monotonic()
        self.outcomes: list[str] = []  # supervisor outcomes, for the call's metric outcome
        self.speech_stopped_at: float | None = None  # → first assistant audio (metric)
        metrics.ACTIVE_CALLS.labels(transport=config.transport).inc()

        self._session_ready = False
        self._user_speaking = False
        self._pending_outputs: deque[tuple[str, str]] = deque()  # (hand-over id, answer)
        self._answer_due = False
        self._answer_attempts = 0
        self._cancelled_handovers: set[str] = set()
        self._answer_purpose: tuple[Purpose, Line | None] = (ANSWER, None)
        self.action_runner = ActionRunner(
            call_id, transport=config.transport, actions=actions, recorder=self.recorder, log=self.log,
            remote_ms_per_char=config.remote_ms_per_char if config.sideband else None,
        )  # fmt: skip
        self._changed = asyncio.Event()  # set whenever response/speech/playback state changes
        self._tasks: set[asyncio.Task[Any]] = set()
        self._handlers: dict[type, Handler] = {
            ev.SessionReady: self._on_session_ready,
            ev.ItemAdded: self.recorder.item_added,
            ev.CallerTranscript: self.recorder.user_transcript,
            ev.CallerTranscriptFailed: self.recorder.user_transcript_failed,
            ev.AgentTruncated: self.recorder.truncated_by_engine,
            ev.Dtmf: lambda event: self.recorder.dtmf(event.digit),  # SIP's (Twilio's: caller_dtmf)
            ev.CallerSpeechStarted: self._on_speech_started,
            ev.CallerSpeechStopped: self._on_speech_stopped,
            ev.ReplyStarted: self._on_reply_started,
            ev.ReplyEnded: self._on_reply_ended,
            ev.AgentAudio: partial(agent_audio.relay, self),
            ev.AgentTranscriptDelta: self._on_transcript_delta,
            ev.AgentTranscriptDone: self._on_agent_transcript,
            ev.HandoverRequested: self._on_handover,
            ev.EngineError: self._on_error,
        }

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        await self.engine.start()

    async def run(self) -> None:
        """Process engine events until the session ends or the call ends."""
        try:
            await self.pump()
        finally:
            await self.close()

    async def pump(self) -> None:
        """This session's events, until it or the call ends (:meth:`resume` may carry the call on)."""
        async for event in in_short_steps(self.engine.events()):  # a burst does not hold the loop
            handler = self._handlers.get(type(event))
            if handler is None:
                continue
            try:
                await handler(event)
            except Exception as exc:
                self.log.exception("call.event_handler_failed", event_type=type(event).__name__)
                if isinstance(exc, RedisError):
                    metrics.REDIS_ERRORS.labels(operation=type(event).__name__).inc()
            if self.closed:
                break

    def park(self, stand_in: ParkedEngine) -> None:
        """The session dropped: ``stand_in`` keeps what the call does until :meth:`resume`."""
        self.engine = self._audio_to = stand_in

    async def resume(self, engine: Engine) -> int:
        """Continue the call on a new session after a drop: the history restored, no new
        greeting, what was due asked for again (a supervisor answer queued, answered while
        parked or sent into the dying socket; a caller turn unanswered). Returns the items restored."""
        parked = self.engine if isinstance(self.engine, ParkedEngine) else ParkedEngine(self.call_id, 0)
        self._watch(engine)
        await engine.start()
        await self.recorder.flush(REPLAY_WRITES_WAIT_S)  # restore what the old session said, all of it
        await settle_cut_off_item(self.call_id, self.history, self.recorder, self.playback, self.log)
        await self.recorder.flush(REPLAY_WRITES_WAIT_S)
        try:
            items = await self.history.get_items(self.call_id, limit=RESUME_READ_ITEMS)
        except RedisError as exc:  # the new session starts without memory rather than not at all
            self.log.error("call.replay_history_unavailable", error=short(exc))
            metrics.REDIS_ERRORS.labels(operation="replay").inc()
            items = []
        await give_up_lost_transcripts(self.call_id, self.history, self.recorder, items, self.log)
        restored = await engine.restore(items)
        answered = {*restored.answered, *(h for h, _ in [*self._pending_outputs, *parked.answers])}
        lost = await unrecorded_answers(
            self.call_id, self.history, self.recorder, replayed=restored.handovers, answered=answered,
            cancelled=self._cancelled_handovers, log=self.log,
        )  # fmt: skip
        self._pending_outputs.extend(lost)
        # what belonged to the dead session
        self.responses = ResponseTracker()
        self.playback.clear()
        self._user_speaking, self._cleared = False, None
        self.engine = engine
        for handover_id, text in parked.answers:  # answered while parked, after their calls
            await engine.answer_handover(handover_id, text)
        self._notify()
        if self._pending_outputs or self._answer_due:
            await self._flush_outputs()
        elif restored.awaits_reply and not parked.answers and not self.closed:
            await self._request_reply(ANSWER)
        await parked.replay_audio(engine)  # live audio meanwhile queued behind it, in order
        self._audio_to = engine
        return len(restored.item_ids)

    async def close(self, reason: str | None = None) -> None:
        """End the call (idempotent: the first reason wins; see responder/core/end_reason.py).
        The end is recorded by a task of its own that every caller awaits: one cancelled
        meanwhile (a socket handler whose client went away) does not leave it unrecorded."""
        if self._closing is None:
            self.closed = True
            record = self.action_runner.record
            end_reason = reason or unstated_reason(  # here: a shutdown cancels this task, not _end's
                sideband=self.config.sideband,
                action=record.action if record is not None else None,
                action_reason=record.reason if record is not None else None,
            )
            self._notify()
            self.action_runner.call_closed()
            for task in list(self._tasks):
                task.cancel()
            self._closing = asyncio.ensure_future(self._end(end_reason))
            keep_task(self._closing)
        await asyncio.shield(self._closing)

    async def _end(self, end_reason: str) -> None:
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
            await asyncio.wait_for(self.engine.close(), 2.0)

    def _spawn(self, coro: Awaitable[Any], name: str, *, keep: bool = False) -> None:
        """Run ``coro`` as a task; ``keep`` tasks survive the call's end, others are cancelled."""
        task = asyncio.ensure_future(coro)
        task.set_name(f"{name}:{self.call_id}")
        if keep:
            keep_task(task)
        else:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _notify(self) -> None:
        self._changed.set()

    # -- from the caller side ------------------------------------------------------------
    async def caller_audio(self, b64_audio: str, *, tried_now: bool = False) -> None:
        if tried_now or not self.caller_audio_now(b64_audio):  # tried_now: it just said False
            await self._audio_to.append_audio(b64_audio)

    def caller_audio_now(self, b64_audio: str) -> bool:
        """The hot path without a coroutine; False: await :meth:`caller_audio` (nothing sent)."""
        return not self._session_ready or self.closed or self._audio_to.append_audio_now(b64_audio)

    def caller_mark(self, name: str) -> None:
        if self.playback.on_mark(name):
            self._notify()

    async def caller_dtmf(self, digit: str) -> None:
        await self.recorder.dtmf(digit)

    # -- engine events -------------------------------------------------------------------
    async def _on_session_ready(self, event: ev.SessionReady) -> None:
        if self._session_ready:
            return
        self._session_ready = True
        self.log.info("call.session_ready")
        if self.config.greeting:
            await self._request_reply(GREETING)

    async def _on_speech_started(self, event: ev.CallerSpeechStarted) -> None:
        """Barge-in: silence what is playing and truncate it where the caller stopped hearing it."""
        self._user_speaking = True
        self._notify()
        active = self.responses.active
        if active is not None:
            self.responses.interrupted.add(active.id)  # drop its audio still in flight
            if active.purpose == HOLD_LINE:
                # turn detection may or may not cancel an out-of-band reply: make sure
                self._spawn(self._cancel_if_still_active(active.id), "cancel")
        cleared, self._cleared = self._cleared, None
        sent_by: barge_in.SentBy = "read" if cleared is not None else "handler"
        if (cleared := await barge_in.clear(self.playback, self.caller, cleared, event.over)) is None:
            return  # nothing was playing
        item_id, heard = cleared
        heard_text, full_text = self.playback.heard_text(item_id), self.playback.full_text(item_id)
        self.playback.clear()
        self.log.info(
            "call.barge_in", item_id=item_id, audio_end_ms=heard, sent_ms=self.playback.sent_ms(item_id),
            heard_text=heard_text, full_text=full_text, clear_sent_by=sent_by,
        )  # fmt: skip
        if item_id in self.recorder.out_of_band:
            return  # a hold line is not in the conversation: nothing to truncate
        await self.engine.stop_speaking(item_id, heard)
        await self.recorder.interrupted_at(item_id, heard, heard_text, full_text)

    def _watch(self, engine: Engine) -> None:
        """The engine's early paths: the barge-in's clear, and agent audio relayed as it is read."""
        engine.watch_barge_in(self._barge_in_now)
        engine.take_audio(partial(agent_audio.relay_now, self))

    def _barge_in_now(self) -> None:
        """The engine saw the caller start speaking (:meth:`Engine.watch_barge_in`)."""
        if not self.closed and (cleared := barge_in.clear_now(self.playback, self.caller)):
            self._cleared, self._user_speaking = cleared, True  # as the handler will say

    async def _cancel_if_still_active(self, reply_id: str, grace_s: float = 0.3) -> None:
        await asyncio.sleep(grace_s)
        active = self.responses.active
        if active is not None and active.id == reply_id:
            await self.engine.cancel_reply(reply_id)

    async def _on_speech_stopped(self, event: ev.CallerSpeechStopped) -> None:
        self._user_speaking = False
        self.speech_stopped_at = time.monotonic()
        self.responses.speech_stopped()
        self._notify()
        await self._flush_outputs()  # an answer queued while the caller spoke waits for the window

    async def _on_reply_started(self, event: ev.ReplyStarted) -> None:
        self.responses.created(event.reply_id, event.purpose)
        self._notify()

    async def _on_reply_ended(self, event: ev.ReplyEnded) -> None:
        metrics.observe_realtime_usage(self.config.realtime_model, event.usage)
        status = event.status
        finished = self.responses.done(event.reply_id)
        if (tail := self.playback.flush()) is not None:  # when the reply's last audio has played
            await self.caller.send_mark(tail)
        self._notify()
        if status != "completed":
            self.log.info("call.response_ended", status=status, reason=event.reason)
        if finished is not None and status == "cancelled":
            self._cancelled_handovers.update(finished.tool_calls)
        if finished is not None and finished.purpose == ANSWER:
            # cancelled = the caller spoke over it: their new turn gets its own reply
            self._answer_due = status not in ("completed", "cancelled")
        if finished is not None and finished.purpose == ACTION_LINE:
            self._answer_due = False
            self._spawn(self.action_runner.perform(self), "action", keep=True)
        await self._flush_outputs()

    async def _on_transcript_delta(self, event: ev.AgentTranscriptDelta) -> None:
        self.playback.note_transcript(event.item_id, event.delta)

    async def _on_agent_transcript(self, event: ev.AgentTranscriptDone) -> None:
        active = self.responses.active
        purpose = active.purpose if active else ev.TURN
        await self.recorder.assistant_transcript(event.item_id, event.text, purpose)

    async def _on_error(self, event: ev.EngineError) -> None:
        metrics.realtime_error(event.code)
        self.log.warning(
            "realtime.error", code=event.code, error_type=event.error_type, message=event.message,
            param=event.param, client_event_id=event.client_event_id,
            client_event_type=event.client_event_type,
        )  # fmt: skip
        if self.responses.rejected(event.client_event_id) is not None:
            self._notify()
            await self._flush_outputs()  # an answer that was refused is asked for again

    # -- hand-overs ----------------------------------------------------------------------
    async def _on_handover(self, event: ev.HandoverRequested) -> None:
        name, handover_id, arguments = event.tool, event.handover_id, event.arguments
        await self.recorder.function_call_done(event.item_id, arguments)
        active = self.responses.active
        self.log.info("call.tool_call", tool=name, tool_call_id=handover_id, arguments=arguments)
        if active is not None and active.purpose == HOLD_LINE:
            self.log.warning("call.tool_call_ignored", tool=name, reason="called from a hold line")
            return
        if active is not None:
            active.tool_calls.append(handover_id)
        if name in ACTION_TOOLS:
            await self._on_action_tool(name, handover_id, arguments)  # type: ignore[arg-type]
            return
        if name != SUPERVISOR_TOOL:
            self.log.warning("call.tool_unknown", tool=name)
            self._pending_outputs.append((handover_id, json.dumps({"error": f"unknown tool {name!r}"})))
            await self._flush_outputs()
            return
        context = string_argument(arguments, CONTEXT_ARG)
        if context is None:
            self.log.warning("call.tool_arguments_invalid", tool=name, arguments=arguments[:200])
            context = ""
        # Not cancelled at hang-up: the decision is still recorded for the audit trail and
        # its late result dropped (deliver_answer). Bounded by the supervisor deadline.
        user = event.user_item_id or self.recorder.last_user_item
        self._spawn(ask_supervisor(self, handover_id, context, user, event.trigger), "supervisor", keep=True)

    async def deliver_answer(self, handover_id: str, text: str) -> None:
        """A hand-over's answer: spoken when no reply can collide with it; dropped (and
        logged) when the call ended or the reply that asked for it was cancelled."""
        if self.closed or handover_id in self._cancelled_handovers:
            reason = "call ended" if self.closed else "response cancelled"
            self.log.info("call.late_result_dropped", tool_call_id=handover_id, reason=reason)
            return
        self._pending_outputs.append((handover_id, text))
        await self._flush_outputs()

    async def say_hold_line(self) -> None:
        await self._request_reply(HOLD_LINE, HOLD)

    async def until_quiet(self) -> None:
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
    async def _on_action_tool(self, name: ActionName, handover_id: str, arguments: str) -> None:
        requested = self.action_runner.request(name, handover_id, arguments)
        if requested is None:
            return
        output, line = requested
        self._pending_outputs.append((handover_id, output))
        self._answer_purpose = (ACTION_LINE, line)
        self._spawn(self.action_runner.perform_later(self), "action-watchdog", keep=True)
        await self._flush_outputs()

    async def request_action(self, name: ActionName, handover_id: str, reason: str) -> None:
        """The supervisor asked for it (GPT-Live has no tools): on Live the line answers the delegation."""
        arguments = json.dumps({"reason": reason})
        if self.engine.requests_replies:
            return await self._on_action_tool(name, handover_id, arguments)
        if (requested := self.action_runner.request(name, handover_id, arguments)) is not None:
            self._spawn(self.action_runner.perform_later(self), "action-watchdog", keep=True)
            await self._request_reply(ACTION_LINE, replace(requested[1], handover_id=handover_id))

    async def end_with_line(self, reason: str, line: str, within_s: float) -> None:
        """The service ends the call itself (drain): what is being said may finish, then
        ``line`` is said and the call hung up like ``end_call``, all within ``within_s``."""
        said = None if self.closed else self.action_runner.request_by_service(reason, line)
        if said is None:
            return
        self._spawn(self.action_runner.perform_later(self, within_s), "action-watchdog", keep=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.until_quiet(), within_s / 3)
        active = self.responses.active
        if active is not None:
            await self.engine.cancel_reply(active.id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._until(self.responses.idle), 1.0)
        if not self.closed:
            # due until said: a resumed session asks for it again
            self._answer_purpose, self._answer_due = (ACTION_LINE, said), True
            await self._request_reply(ACTION_LINE, said)

    # -- speaking answers, never over an active reply ------------------------------------
    async def _flush_outputs(self) -> None:
        """Send queued answers and ask for the reply that speaks them, once no reply can collide."""
        if self.closed or not (self._pending_outputs or self._answer_due):
            return
        if not self.engine.requests_replies:  # it speaks answers by itself (GPT-Live)
            while self._pending_outputs:
                await self.engine.answer_handover(*self._pending_outputs.popleft())
            self._answer_due = False
            return
        if not self.responses.idle() or self._user_speaking:
            # The events that end a reply or a caller's turn call us again; only the
            # turn-detection grace window needs a timer.
            if self.responses.grace_remaining() > 0:
                self._spawn(self._flush_later(self.responses.grace_remaining()), "flush")
            return
        if self._pending_outputs:
            self._answer_attempts = 0
        while self._pending_outputs:
            handover_id, output = self._pending_outputs.popleft()
            await self.engine.answer_handover(handover_id, output)
        if self._answer_attempts >= MAX_ANSWER_ATTEMPTS:
            self.log.error("call.answer_not_spoken", attempts=self._answer_attempts)
            self._answer_due = False
            return
        self._answer_attempts += 1
        self._answer_due = True
        await self._request_reply(*self._answer_purpose)

    async def _flush_later(self, delay: float) -> None:
        await asyncio.sleep(delay + 0.01)
        await self._flush_outputs()

    async def _request_reply(self, purpose: Purpose, line: Line | None = None) -> None:
        request_id = self.engine.new_request_id()
        if self.engine.requests_replies:
            # registered before sending: the reply may start while the request is being sent
            self.responses.request_sent(request_id, purpose)
        await self.engine.request_reply(request_id, purpose, line)
