"""OpenAI GPT-Live (client delegation) behind the engine seam of :mod:`responder.core.engine`.

GPT-Live has no items, responses or barge-in events (docs/protocol-live.md). This engine
derives what the controller needs from what the primary WebSocket does send:

* **caller turns** from ``session.input_transcript.delta`` (timeline ``start_ms``/``end_ms``):
  a turn opens with its first fragment (:class:`CallerSpeechStarted`: a barge-in when the agent
  is speaking) and closes once the timeline — which advances with the caller audio this engine
  appends — has moved :data:`TURN_GAP_MS` past its last fragment, or when the model delegates;
* **agent turns** from the audio: the output is one continuous track, silence included; voiced
  chunks are forwarded (silence is not), an utterance starts with the first voiced chunk and
  ends after :data:`UTTERANCE_GAP_MS` of silence, and carries the output transcript;
* **hand-overs** from ``session.delegation.created`` (metadata only: the request is the
  caller's turn up to ``offset_ms``), answered with ``session.commentary.append``;
* **delegation recovery**: a caller turn transcribed but never delegated, after which the
  model stayed quiet or only acknowledged, becomes a hand-over of its own after
  ``recovery_s`` (``trigger: recovered``), answered as general commentary.

Replies are never requested (:attr:`requests_replies` is False): an appended commentary is
spoken when the model sees fit, and appends never collide with one another.

On a **sideband** (SIP, WebRTC: OpenAI carries the audio) the session is already started
(accept / create), the output audio (PCM16 24 kHz) only marks the agent's turns and is not
relayed, the caller's audio comes back reflected (``session.input_audio.append``) and moves the
timeline, and key presses arrive as ``transport.dtmf.received``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Final

from structlog.typing import FilteringBoundLogger

from callrecord.decisions import Trigger
from callrecord.history import APPEND, HistoryItem
from responder.core import engine as ev
from responder.core.engine import EngineName, Line, Purpose, Restored
from responder.core.tools import SUPERVISOR_TOOL
from responder.engines.live import protocol
from responder.engines.live.audio import chunk_ms, is_silent
from responder.engines.live.delegations import MAX_RUNNING_DEFAULT, DelegationBook
from responder.engines.live.onset import CallerOnset, speech_started
from responder.engines.live.restore import restored_context
from responder.engines.live.turns import CallerTurn, Raw, Utterance, ms_of, ms_or, spoken_chars, text_of
from responder.engines.realtime.connection import RealtimeSocket

SIDEBAND_BYTES_PER_MS: Final = 48.0  # a sideband's audio is PCM16 24 kHz, whatever the call's codec
TURN_GAP_MS: Final = 800.0  # timeline ms without a caller fragment that end the caller's turn
UTTERANCE_GAP_MS: Final = 600.0  # ms of silent output that end an agent utterance
SUBSTANTIVE_REPLY_CHARS: Final = 40  # a reply longer than this is an answer, not an acknowledgement
MAX_TURN_CHARS: Final = 8000  # transcript kept of one caller turn or agent utterance (~10 min of talk)
FUTURE_SLACK_MS: Final = 2000.0  # how far past the timeline a fragment's end_ms is believed
QUEUE_HIGH: Final = 256  # events waiting for the controller before the reader stops reading
HELD_AUDIO_FRAMES: Final = 500  # caller audio kept for a session not started yet (10 s of frames)
RECOVERED_PREFIX: Final = "recovered_"
START_TIMEOUT_S: Final = 10.0  # session.start unconfirmed this long: the session failed


class SessionRefused(Exception):
    """No ``session.started`` (an ``error`` first, or the start timeout): a drop of the session."""


_SENTENCE_JOIN = re.compile(r"[.!?][A-Z]")  # a sentence's end glued to the next one's start


class LiveEngine:
    name: EngineName = "live"
    requests_replies = False

    def __init__(
        self, conn: RealtimeSocket, session: dict[str, Any], log: FilteringBoundLogger, *,
        bytes_per_ms: float, recovery_s: float = 2.0, sideband: bool = False,
        start_timeout_s: float = START_TIMEOUT_S, max_running: int = MAX_RUNNING_DEFAULT,
    ) -> None:  # fmt: skip
        self.conn, self.session, self.log = conn, session, log
        self.sideband = sideband
        self.bytes_per_ms = SIDEBAND_BYTES_PER_MS if sideband else bytes_per_ms
        fmt = (session.get("audio") or {}).get("format") or {}
        self.encoding = "audio/pcm" if sideband else str(fmt.get("type", "audio/pcm"))
        self.recovery_s, self.timeline_ms = recovery_s, 0.0
        self._queue: asyncio.Queue[ev.EngineEvent | None] = asyncio.Queue()
        self._room = asyncio.Event()  # set when the controller has caught up with the queue
        self._ids = itertools.count(1)
        self._caller: CallerTurn | None = None
        self._previous: CallerTurn | None = None  # the turn before self._caller
        self._agent: Utterance | None = None
        self._delegations: set[str] = set()  # created on this session: the only ids it accepts
        self._recovered: dict[str, str] = {}  # caller item id → the answer appended for it
        self._recovering: dict[str, CallerTurn] = {}  # caller item id → turn, until answered
        self._recovery_tasks: set[asyncio.Task[Any]] = set()
        self._failure: Exception | None = None
        self._onset = CallerOnset()  # the caller's speech start from their own audio
        # a primary session takes commands only once started (docs/protocol-live.md §1): what
        # is sent before session.started is held, then sent in order
        self._started = sideband
        self._held: list[Raw | str] = []
        self._session_started = sideband  # session.started seen (a sideband's was, before us)
        self.start_timeout_s = start_timeout_s
        self.book = DelegationBook(log, max_running)  # hand-overs running, waiting, stale
        self._tagged: dict[str, Purpose] = {}  # commentary event id → the purpose of its speech
        self._next_purpose: Purpose | None = None  # … once placed: the next utterance's

    # -- events in -------------------------------------------------------------------------
    async def events(self) -> AsyncIterator[ev.EngineEvent]:
        reader = asyncio.ensure_future(self._read())
        try:
            while True:
                event = await self._queue.get()
                if self._queue.qsize() < QUEUE_HIGH // 2:
                    self._room.set()
                if event is None:
                    if self._failure is not None:
                        raise self._failure  # the socket failed: the session loop sees a drop
                    return
                yield event
        finally:
            reader.cancel()
            for task in list(self._recovery_tasks):
                task.cancel()

    async def _read(self) -> None:
        """Translate the socket's events until it ends; the end (or failure) ends :meth:`events`."""
        try:
            await self._translate_all()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failure = exc
        self._queue.put_nowait(None)

    async def _translate_all(self) -> None:
        async for raw in self.conn.events():
            kind = raw.get("type")
            translate = _TRANSLATE.get(kind) if isinstance(kind, str) else None
            if translate is None:
                continue
            try:
                translate(self, raw)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                self.log.warning("gpt_live.event_invalid", event_type=kind, problem=repr(exc)[:200])
            if self._queue.qsize() >= QUEUE_HIGH:  # the controller is behind: hold the socket back
                self._room.clear()
                await self._room.wait()

    def _emit(self, *events: ev.EngineEvent) -> None:
        for event in events:
            self._queue.put_nowait(event)

    def _new_id(self, kind: str) -> str:
        return f"live_{kind}_{next(self._ids)}"

    def _on_started(self, raw: Raw) -> None:
        self._session_started = True
        if not self._started:
            if self._held:
                self._spawn(self._release_held())
            else:
                self._started = True
        self._emit(ev.SessionReady())

    async def _release_held(self) -> None:
        while self._held:  # sends made meanwhile join the queue: the order is kept
            held = self._held.pop(0)
            await (self.conn.append_audio(held) if isinstance(held, str) else self.conn.send(held))
        self._started = True

    async def _send(self, event: Raw) -> None:
        if self._started:
            await self.conn.send(event)
        else:
            self._held.append(event)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._recovery_tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._recovery_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:  # a send into a dropped socket
            self.log.warning("gpt_live.task_failed", error=repr(task.exception())[:200])

    def _on_input_transcript(self, raw: Raw) -> None:
        delta, end_ms = text_of(raw, "delta"), ms_of(raw, "end_ms")
        end_ms = min(end_ms, self.timeline_ms + FUTURE_SLACK_MS)  # a timeline in µs is not a turn for ever
        start_ms = min(ms_or(raw, "start_ms", end_ms), end_ms)
        turn = self._caller
        if turn is not None and turn.closed and turn.offset_ms is not None and start_ms < turn.offset_ms:
            # the tail of a turn the model has delegated, arriving after it: the same turn
            self._add_words(turn, delta, end_ms)
            self._emit(ev.CallerTranscript(turn.item_id, turn.text))
            return
        if turn is None or turn.closed:
            self._previous = turn
            turn = self._caller = CallerTurn(self._new_id("in"), start_ms, end_ms)
            self._emit(ev.ItemAdded(ev.ConversationItem(turn.item_id, "message", "user"), APPEND))
            if not self._onset.voice.speaking:  # not heard on our side (a sideband, a quiet line)
                self._emit(speech_started(self._agent))
            self._onset.pending = False  # the turn ends what the caller's audio started
        self._add_words(turn, delta, end_ms)

    def _add_words(self, turn: CallerTurn, delta: str, end_ms: float) -> None:
        turn.last_end_ms = max(turn.last_end_ms, end_ms)
        if turn.chars + len(delta) > MAX_TURN_CHARS:
            if turn.chars <= MAX_TURN_CHARS:
                turn.chars = MAX_TURN_CHARS + 1  # logged once
                self.log.warning("gpt_live.transcript_capped", item_id=turn.item_id, role="user")
            return
        turn.parts.append(delta)
        turn.chars += len(delta)

    def _close_caller_turn(self) -> CallerTurn | None:
        turn = self._caller
        if turn is None or turn.closed:
            return turn
        turn.closed = True
        self._emit(ev.CallerTranscript(turn.item_id, turn.text), ev.CallerSpeechStopped())
        if turn.text:
            self._spawn(self._recover_later(turn))
        return turn

    def _on_output_transcript(self, raw: Raw) -> None:
        utterance = self._open_utterance()
        delta = text_of(raw, "delta")
        if utterance.chars + len(delta) > MAX_TURN_CHARS:
            if utterance.chars <= MAX_TURN_CHARS:
                utterance.chars = MAX_TURN_CHARS + 1  # logged once
                self.log.warning("gpt_live.transcript_capped", item_id=utterance.item_id, role="assistant")
            return
        if utterance.parts and _SENTENCE_JOIN.search(utterance.parts[-1][-1:] + delta[:1]):
            delta = " " + delta  # two lines said back to back ("One moment." then the answer)
        utterance.parts.append(delta)
        utterance.chars += len(delta)
        self._emit(ev.AgentTranscriptDelta(utterance.item_id, delta))

    def _open_utterance(self) -> Utterance:
        if self._agent is None:
            self._agent = Utterance(self._new_id("out"))
            item = ev.ConversationItem(self._agent.item_id, "message", "assistant")
            purpose, self._next_purpose = self._next_purpose, None
            self._emit(ev.ItemAdded(item, APPEND), ev.ReplyStarted(self._agent.item_id, purpose))
        return self._agent

    def _on_output_audio(self, raw: Raw) -> None:
        """Hot path: voiced chunks are forwarded as they came; silence ends an utterance."""
        delta = raw.get("delta")
        if not isinstance(delta, str) or not delta:
            return
        if is_silent(delta, self.encoding):
            utterance = self._agent
            if utterance is not None:
                utterance.silent_ms += chunk_ms(delta, self.bytes_per_ms)
                utterance.read_at = time.monotonic()
                if utterance.silent_ms >= UTTERANCE_GAP_MS:
                    self._end_utterance(utterance)
            return
        utterance = self._open_utterance()
        utterance.silent_ms, utterance.read_at = 0.0, time.monotonic()
        if not self.sideband:  # on a sideband the caller hears it from OpenAI, not from us
            self._emit(ev.AgentAudio(utterance.item_id, utterance.item_id, delta))

    def _end_utterance(self, utterance: Utterance) -> None:
        self._agent = None
        text = "".join(utterance.parts).strip()
        turn = self._caller
        if turn is not None and turn.closed:
            turn.agent_chars_after += len(text)
        self._emit(ev.AgentTranscriptDone(utterance.item_id, text))
        self._emit(ev.ReplyEnded(utterance.item_id, "completed"))

    def _on_delegation(self, raw: Raw) -> None:
        delegation = raw["delegation"]
        delegation_id = delegation["id"]
        if not isinstance(delegation_id, str) or not delegation_id:
            raise ValueError("delegation.id is not a string")
        offset = ms_or(raw, "offset_ms", None)
        if delegation_id in self._delegations:  # delivered again: one hand-over, one answer
            self.log.warning("gpt_live.delegation_repeated", tool_call_id=delegation_id)
            return
        self._delegations.add(delegation_id)
        turn = self._turn_at(offset)
        if turn is not None:
            turn.delegated = True
            turn.offset_ms = offset if turn.offset_ms is None else turn.offset_ms
            answered = self._recovered.get(turn.item_id)
            if answered is not None:  # recovered already: the same answer, never a second run
                self._spawn(self._send(protocol.commentary_append(answered, delegation_id)))
                return
            if turn.recovering:  # recovered, the supervisor still at it: its answer, when it comes
                turn.waiting.append(delegation_id)
                return
        self._hand_over(delegation_id, "delegation", turn)

    def _turn_at(self, offset: float | None) -> CallerTurn | None:
        """The caller turn a delegation created at ``offset`` is about: the latest one (which
        it ends), or the one before when the latest began after ``offset`` (and goes on)."""
        turn = self._caller
        if turn is not None and offset is not None and offset < turn.start_ms:
            return self._previous
        return self._close_caller_turn()

    def _hand_over(self, handover_id: str, trigger: Trigger, turn: CallerTurn | None) -> None:
        user_item = turn.item_id if turn is not None else None
        if self.book.admit(handover_id, user_item, trigger) == "start":
            self._start_hand_over(handover_id, trigger, user_item)

    def _start_hand_over(self, handover_id: str, trigger: Trigger, user_item: str | None) -> None:
        item = ev.ConversationItem(handover_id, "function_call", "assistant", name=SUPERVISOR_TOOL,
                                   tool_call_id=handover_id)  # fmt: skip
        self._emit(ev.ItemAdded(item, APPEND))
        self._emit(ev.HandoverRequested(handover_id, SUPERVISOR_TOOL, "", handover_id, trigger, user_item))

    async def _recover_later(self, turn: CallerTurn) -> None:
        """The known Live failure: a turn transcribed but never delegated."""
        await asyncio.sleep(self.recovery_s)
        said = turn.agent_chars_after + spoken_chars(self._agent)  # an acknowledgement is not an answer
        if turn.delegated or self._caller is not turn or said > SUBSTANTIVE_REPLY_CHARS:
            return
        self.log.warning("gpt_live.delegation_recovered", item_id=turn.item_id, waited_s=self.recovery_s)
        turn.delegated = turn.recovering = True
        self._recovering[turn.item_id] = turn
        self._hand_over(RECOVERED_PREFIX + turn.item_id, "recovered", turn)

    def _on_error(self, raw: Raw) -> None:
        error = raw.get("error") or {}
        client_event_id = error.get("client_event_id")
        client_event_id = client_event_id if isinstance(client_event_id, str) else None
        self._emit(ev.EngineError(
            code=error.get("code"), error_type=error.get("type"), message=error.get("message"),
            param=error.get("param"), client_event_id=client_event_id,
            client_event_type=self.conn.sent_type(client_event_id),
        ))  # fmt: skip
        if not self._session_started:  # session.start refused: no session will come on this socket
            raise SessionRefused(f"session.start refused: {str(error.get('code'))[:64]}")

    # -- commands out ----------------------------------------------------------------------
    async def start(self) -> None:
        if not self.sideband:  # a sideband's session was started by accept / create
            await self.conn.send(protocol.session_start(self.session))
            self._spawn(self._unconfirmed_start())

    async def _unconfirmed_start(self) -> None:
        """A session.start the server never confirms fails the session (a drop), not the call's wait."""
        await asyncio.sleep(self.start_timeout_s)
        if not self._session_started and self._failure is None:
            self.log.error("gpt_live.session_start_timeout", waited_s=self.start_timeout_s)
            self._failure = SessionRefused(f"no session.started within {self.start_timeout_s:g}s")
            self._queue.put_nowait(None)

    async def append_audio(self, b64_audio: str) -> None:
        if not self.append_audio_now(b64_audio):  # the socket must be waited for
            await self.conn.append_audio(b64_audio)
            self._listen(b64_audio)

    def append_audio_now(self, b64_audio: str) -> bool:
        if self._started and not self.conn.append_audio_now(b64_audio):
            return False
        if not self._started and len(self._held) < HELD_AUDIO_FRAMES:
            self._held.append(b64_audio)
        self._listen(b64_audio)
        return True

    def _listen(self, b64_audio: str) -> None:
        """The caller's own audio as the barge-in signal (see :mod:`.onset`)."""
        ms = chunk_ms(b64_audio, self.bytes_per_ms)
        event = self._onset.feed(b64_audio, self.encoding, ms, self._caller_open(), self._agent)
        if event is not None:
            self._emit(event)
        self._advance(ms)

    def _caller_open(self) -> bool:
        return self._caller is not None and not self._caller.closed

    def _advance(self, ms: float) -> None:
        """The timeline moved on with the caller's audio: a turn with no new words ends."""
        self.timeline_ms += ms
        turn = self._caller
        if turn is not None and not turn.closed and self.timeline_ms - turn.last_end_ms >= TURN_GAP_MS:
            self._close_caller_turn()

    def _on_reflected_audio(self, raw: Raw) -> None:
        audio = raw.get("audio")
        if isinstance(audio, str):
            self._advance(chunk_ms(audio, SIDEBAND_BYTES_PER_MS))

    def _on_dtmf(self, raw: Raw) -> None:
        digit = raw.get("event")
        if isinstance(digit, str) and len(digit) == 1 and digit in "0123456789*#ABCD":
            self._emit(ev.Dtmf(digit))

    def new_request_id(self) -> str:
        return self.conn.new_event_id()

    def watch_barge_in(self, now: Callable[[], None]) -> None:
        """Nothing to watch: a barge-in is derived from the caller's transcript (module docstring)."""

    def take_audio(self, now: ev.AudioNow) -> None:
        """Nothing to take: the audio comes out of the utterance it belongs to, as events."""

    async def request_reply(self, request_id: str, purpose: Purpose, line: Line | None = None) -> None:
        """Live speaks by itself: a greeting or a line becomes commentary (a line that answers a
        hand-over, the one before an action, is that delegation's answer; its speech is tagged
        with its purpose once placed), a hold line a silent progress note for the newest
        delegation still with the supervisor (docs/protocol-live.md §3)."""
        if purpose == ev.HOLD_LINE and line is not None:
            note = protocol.HOLD_THINKING.format(text=line.text)
            await self._send({**protocol.thinking_append(note, self._live_id(self.book.newest_running())),
                              "event_id": request_id})  # fmt: skip
            return
        if line is not None and line.handover_id is not None:  # the answer, said as it is
            self._tagged[request_id] = purpose
            await self.answer_handover(line.handover_id, line.text, event_id=request_id)
            return
        if purpose == ev.GREETING:
            content = protocol.GREETING_COMMENTARY
        elif line is not None:
            content = f'Say exactly: "{line.text}" Nothing else.'
            self._tagged[request_id] = purpose
        else:
            return  # an answer: its commentary is already in, and will be spoken
        await self._send({**protocol.commentary_append(content, None), "event_id": request_id})

    def _live_id(self, handover_id: str | None) -> str | None:
        """The delegation id an append may carry (an id is valid only where it was created)."""
        return handover_id if handover_id in self._delegations else None

    async def answer_handover(self, handover_id: str, text: str, event_id: str | None = None) -> None:
        """The answer as commentary for its delegation (and those that joined it); general
        commentary for a recovered turn or a delegation of an earlier session. A stale answer
        (the caller has moved on to a newer hand-over's turn) is dropped and logged."""
        joined, stale = self.book.finish(handover_id)
        if (waiting := self.book.next_waiting()) is not None:  # a place is free
            self._start_hand_over(waiting.handover_id, waiting.trigger, waiting.turn)
        if stale:
            self.log.info("call.late_result_dropped", tool_call_id=handover_id, reason="superseded")
            return
        if handover_id.startswith(RECOVERED_PREFIX):
            item_id = handover_id.removeprefix(RECOVERED_PREFIX)
            self._recovered[item_id] = text
            turn = self._recovering.pop(item_id, None)
            if turn is not None:
                turn.recovering, joined = False, [*joined, *turn.waiting]
        event = protocol.commentary_append(text, self._live_id(handover_id))
        await self._send({**event, "event_id": event_id} if event_id else event)
        for delegation_id in joined:  # the same turn delegated again: the same answer, for each
            await self._send(protocol.commentary_append(text, delegation_id))
        item = ev.ConversationItem(self._new_id("answer"), "function_call_output", "system",
                                   tool_call_id=handover_id, output=event["content"])  # fmt: skip
        self._emit(ev.ItemAdded(item, APPEND))

    def _on_commentary_appended(self, raw: Raw) -> None:
        """A tagged line is placed: what follows is that line (an acknowledgement still going ends)."""
        purpose = self._tagged.pop(str(raw.get("client_event_id")), None)
        if purpose is None:
            return
        if self._agent is not None:
            self._end_utterance(self._agent)
        self._next_purpose = purpose

    async def stop_speaking(self, item_id: str, heard_ms: int) -> None:
        """The model owns barge-in on Live: the controller clears the caller's buffer, and the
        rest of this utterance is not forwarded."""

    async def cancel_reply(self, reply_id: str) -> None:
        """No client event cancels Live speech."""

    async def restore(self, items: Sequence[HistoryItem]) -> Restored:
        """A new session after a drop: the conversation so far as silent context (see
        :func:`~responder.engines.live.restore.restored_context`)."""
        note, restored = restored_context(items)
        if note is not None:
            await self._send(protocol.thinking_append(note, None))
        return restored

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.conn.send(protocol.session_close()), 1.0)
        await self.conn.close()


_TRANSLATE: dict[str, Callable[[LiveEngine, Raw], None]] = {
    "session.started": LiveEngine._on_started,
    "session.input_transcript.delta": LiveEngine._on_input_transcript,
    "session.output_transcript.delta": LiveEngine._on_output_transcript,
    "session.output_audio.delta": LiveEngine._on_output_audio,
    "session.delegation.created": LiveEngine._on_delegation,
    "session.input_audio.append": LiveEngine._on_reflected_audio,  # sideband only
    "transport.dtmf.received": LiveEngine._on_dtmf,  # sideband of a SIP call
    "session.commentary.appended": LiveEngine._on_commentary_appended,
    "error": LiveEngine._on_error,
}
