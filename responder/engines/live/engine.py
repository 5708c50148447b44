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
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final

from openai import AsyncOpenAI
from structlog.typing import FilteringBoundLogger

from callrecord.decisions import Trigger
from callrecord.history import APPEND, HistoryItem
from responder.core import engine as ev
from responder.core.engine import EngineName, Line, Purpose, Restored
from responder.core.tools import SUPERVISOR_TOOL
from responder.engines.live import protocol
from responder.engines.live.audio import CallerVoice, caller_voiced, chunk_ms, is_silent
from responder.engines.realtime.connection import RealtimeConnection, RealtimeSocket

SIDEBAND_BYTES_PER_MS: Final = 48.0  # a sideband's audio is PCM16 24 kHz, whatever the call's codec
TURN_GAP_MS: Final = 800.0  # timeline ms without a caller fragment that end the caller's turn
UTTERANCE_GAP_MS: Final = 600.0  # ms of silent output that end an agent utterance
SUBSTANTIVE_REPLY_CHARS: Final = 40  # a reply longer than this is an answer, not an acknowledgement
RECOVERED_PREFIX: Final = "recovered_"
GREETING_COMMENTARY: Final = (
    "The caller has just been connected: greet them now, as your instructions say."
)
HOLD_COMMENTARY: Final = 'Tell the caller, in a few words, that you are still checking: "{text}"'
RESTORE_INTRO: Final = "The connection was restored. The conversation so far, for context:"

Raw = dict[str, Any]


@dataclass
class _CallerTurn:
    item_id: str
    last_end_ms: float
    parts: list[str] = field(default_factory=list)
    closed: bool = False
    delegated: bool = False
    agent_chars_after: int = 0  # what the agent said after the turn ended

    @property
    def text(self) -> str:
        return "".join(self.parts).strip()


@dataclass
class _Utterance:
    item_id: str
    parts: list[str] = field(default_factory=list)
    silent_ms: float = 0.0


class LiveEngine:
    name: EngineName = "live"
    requests_replies = False

    def __init__(
        self, conn: RealtimeSocket, session: dict[str, Any], log: FilteringBoundLogger, *,
        bytes_per_ms: float, recovery_s: float = 2.0, sideband: bool = False,
    ) -> None:  # fmt: skip
        self.conn = conn
        self.session = session
        self.log = log
        self.sideband = sideband
        self.bytes_per_ms = SIDEBAND_BYTES_PER_MS if sideband else bytes_per_ms
        fmt = (session.get("audio") or {}).get("format") or {}
        self.encoding = "audio/pcm" if sideband else str(fmt.get("type", "audio/pcm"))
        self.recovery_s = recovery_s
        self.timeline_ms = 0.0
        self._queue: asyncio.Queue[ev.EngineEvent | None] = asyncio.Queue()
        self._ids = itertools.count(1)
        self._caller: _CallerTurn | None = None
        self._agent: _Utterance | None = None
        self._recovered: dict[str, str] = {}  # caller item id → the answer appended for it
        self._recovery_tasks: set[asyncio.Task[Any]] = set()
        self._failure: Exception | None = None
        self._voice = CallerVoice()

    # -- events in -------------------------------------------------------------------------
    async def events(self) -> AsyncIterator[ev.EngineEvent]:
        reader = asyncio.ensure_future(self._read())
        try:
            while True:
                event = await self._queue.get()
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

    def _emit(self, *events: ev.EngineEvent) -> None:
        for event in events:
            self._queue.put_nowait(event)

    def _new_id(self, kind: str) -> str:
        return f"live_{kind}_{next(self._ids)}"

    def _on_input_transcript(self, raw: Raw) -> None:
        delta, end_ms = _text(raw, "delta"), _ms(raw, "end_ms")
        turn = self._caller
        if turn is None or turn.closed:
            turn = self._caller = _CallerTurn(self._new_id("in"), end_ms)
            self._emit(ev.ItemAdded(ev.ConversationItem(turn.item_id, "message", "user"), APPEND))
            if not self._voice.speaking:  # not heard on our side (a sideband, a quiet line)
                self._emit(ev.CallerSpeechStarted())
        turn.parts.append(delta)
        turn.last_end_ms = max(turn.last_end_ms, end_ms)

    def _close_caller_turn(self) -> _CallerTurn | None:
        turn = self._caller
        if turn is None or turn.closed:
            return turn
        turn.closed = True
        self._emit(ev.CallerTranscript(turn.item_id, turn.text), ev.CallerSpeechStopped())
        if turn.text:
            task = asyncio.ensure_future(self._recover_later(turn))
            self._recovery_tasks.add(task)
            task.add_done_callback(self._recovery_tasks.discard)
        return turn

    def _on_output_transcript(self, raw: Raw) -> None:
        utterance = self._open_utterance()
        delta = _text(raw, "delta")
        utterance.parts.append(delta)
        self._emit(ev.AgentTranscriptDelta(utterance.item_id, delta))

    def _open_utterance(self) -> _Utterance:
        if self._agent is None:
            self._agent = _Utterance(self._new_id("out"))
            item = ev.ConversationItem(self._agent.item_id, "message", "assistant")
            self._emit(ev.ItemAdded(item, APPEND), ev.ReplyStarted(self._agent.item_id, None))
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
                if utterance.silent_ms >= UTTERANCE_GAP_MS:
                    self._end_utterance(utterance)
            return
        utterance = self._open_utterance()
        utterance.silent_ms = 0.0
        if not self.sideband:  # on a sideband the caller hears it from OpenAI, not from us
            self._emit(ev.AgentAudio(utterance.item_id, utterance.item_id, delta))

    def _end_utterance(self, utterance: _Utterance) -> None:
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
        turn = self._close_caller_turn()
        if turn is not None:
            turn.delegated = True
            answered = self._recovered.get(turn.item_id)
            if answered is not None:  # recovered already: the same answer, never a second run
                resend = self.conn.send(protocol.commentary_append(answered, delegation_id))
                task = asyncio.ensure_future(resend)
                self._recovery_tasks.add(task)
                task.add_done_callback(self._recovery_tasks.discard)
                return
        self._hand_over(delegation_id)

    def _hand_over(self, handover_id: str, trigger: Trigger = "delegation") -> None:
        item = ev.ConversationItem(handover_id, "function_call", "assistant", name=SUPERVISOR_TOOL,
                                   tool_call_id=handover_id)  # fmt: skip
        self._emit(ev.ItemAdded(item, APPEND))
        self._emit(ev.HandoverRequested(handover_id, SUPERVISOR_TOOL, "", handover_id, trigger))

    async def _recover_later(self, turn: _CallerTurn) -> None:
        """The known Live failure: a turn transcribed but never delegated."""
        await asyncio.sleep(self.recovery_s)
        said = turn.agent_chars_after + _chars(self._agent)  # an acknowledgement is not an answer
        if turn.delegated or self._caller is not turn or said > SUBSTANTIVE_REPLY_CHARS:
            return
        self.log.warning("gpt_live.delegation_recovered", item_id=turn.item_id, waited_s=self.recovery_s)
        turn.delegated = True
        self._hand_over(RECOVERED_PREFIX + turn.item_id, "recovered")

    def _on_error(self, raw: Raw) -> None:
        error = raw.get("error") or {}
        client_event_id = error.get("client_event_id")
        client_event_id = client_event_id if isinstance(client_event_id, str) else None
        self._emit(ev.EngineError(
            code=error.get("code"), error_type=error.get("type"), message=error.get("message"),
            param=error.get("param"), client_event_id=client_event_id,
            client_event_type=self.conn.sent_type(client_event_id),
        ))  # fmt: skip

    # -- commands out ----------------------------------------------------------------------
    async def start(self) -> None:
        if not self.sideband:  # a sideband's session was started by accept / create
            await self.conn.send(protocol.session_start(self.session))

    async def append_audio(self, b64_audio: str) -> None:
        await self.conn.append_audio(b64_audio)
        ms = chunk_ms(b64_audio, self.bytes_per_ms)
        if self._voice.feed(caller_voiced(b64_audio, self.encoding), ms) and not self._caller_open():
            # Live says nothing when the caller starts talking (the model stops by itself): the
            # caller's own audio is the signal, so that what still plays for them is cleared now
            self._emit(ev.CallerSpeechStarted())
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

    async def request_reply(self, request_id: str, purpose: Purpose, line: Line | None = None) -> None:
        """Live speaks by itself; what the controller asks for becomes general commentary."""
        if purpose == ev.GREETING:
            content = GREETING_COMMENTARY
        elif purpose == ev.HOLD_LINE and line is not None:
            content = HOLD_COMMENTARY.format(text=line.text)
        elif line is not None:
            content = f'Say exactly: "{line.text}" Nothing else.'
        else:
            return  # an answer: its commentary is already in, and will be spoken
        await self.conn.send({**protocol.commentary_append(content, None), "event_id": request_id})

    async def answer_handover(self, handover_id: str, text: str) -> None:
        recovered = handover_id.startswith(RECOVERED_PREFIX)
        if recovered:
            self._recovered[handover_id.removeprefix(RECOVERED_PREFIX)] = text
        event = protocol.commentary_append(text, None if recovered else handover_id)
        await self.conn.send(event)
        item = ev.ConversationItem(self._new_id("answer"), "function_call_output", "system",
                                   tool_call_id=handover_id, output=event["content"])  # fmt: skip
        self._emit(ev.ItemAdded(item, APPEND))

    async def stop_speaking(self, item_id: str, heard_ms: int) -> None:
        """The model owns barge-in on Live (nothing to send); the caller's buffer is cleared by
        the controller and the rest of this utterance is not forwarded."""

    async def cancel_reply(self, reply_id: str) -> None:
        """No client event cancels Live speech."""

    async def restore(self, items: Sequence[HistoryItem]) -> Restored:
        """A new session after a drop: the conversation so far as silent context."""
        lines = [f"{'Caller' if i.role == 'user' else 'Agent'}: {i.text}" for i in items
                 if i.kind == "message" and i.text and i.role in ("user", "assistant")]  # fmt: skip
        if not lines:
            return Restored()
        await self.conn.send(protocol.thinking_append("\n".join([RESTORE_INTRO, *lines[-20:]]), None))
        return Restored(item_ids=frozenset(i.id for i in items if i.kind == "message" and i.text))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.conn.send(protocol.session_close()), 1.0)
        await self.conn.close()


def _text(raw: Raw, key: str) -> str:
    value = raw.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"{key} is not a string")
    return value


def _ms(raw: Raw, key: str) -> float:
    value = raw.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value < 0:
        raise ValueError(f"{key} is not a non-negative number")
    return float(value)


def _chars(utterance: _Utterance | None) -> int:
    return 0 if utterance is None else len("".join(utterance.parts).strip())


_TRANSLATE: dict[str, Callable[[LiveEngine, Raw], None]] = {
    "session.started": lambda engine, raw: engine._emit(ev.SessionReady()),
    "session.input_transcript.delta": LiveEngine._on_input_transcript,
    "session.output_transcript.delta": LiveEngine._on_output_transcript,
    "session.output_audio.delta": LiveEngine._on_output_audio,
    "session.delegation.created": LiveEngine._on_delegation,
    "session.input_audio.append": LiveEngine._on_reflected_audio,  # sideband only
    "transport.dtmf.received": LiveEngine._on_dtmf,  # sideband of a SIP call
    "error": LiveEngine._on_error,
}


@asynccontextmanager
async def open_live_engine(
    client: AsyncOpenAI, call_id: str, session: dict[str, Any], log: FilteringBoundLogger, *,
    bytes_per_ms: float, recovery_s: float,
) -> AsyncIterator[LiveEngine]:  # fmt: skip
    """A new GPT-Live session on the primary WebSocket (``session.start`` on :meth:`start`).
    The SDK's own reconnect stays off: a new socket is a new session, which the controller
    resumes itself."""
    async with client.live.connect() as conn:
        socket = RealtimeConnection(conn, call_id, frame_audio=protocol.audio_append)
        yield LiveEngine(socket, session, log, bytes_per_ms=bytes_per_ms, recovery_s=recovery_s)


@asynccontextmanager
async def open_live_sideband(
    client: AsyncOpenAI, session_id: str, log: FilteringBoundLogger, *, recovery_s: float
) -> AsyncIterator[LiveEngine]:
    """The sideband of a Live session OpenAI carries (SIP accepted, WebRTC created)."""
    async with client.live.sideband.connect(session_id=session_id) as conn:
        socket = RealtimeConnection(conn, session_id, frame_audio=protocol.audio_append)
        yield LiveEngine(socket, {}, log, bytes_per_ms=SIDEBAND_BYTES_PER_MS, recovery_s=recovery_s,
                         sideband=True)  # fmt: skip
