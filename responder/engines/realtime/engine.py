"""The OpenAI Realtime API (GA) behind the engine seam of :mod:`responder.core.engine`.

Server events (plain dicts from a :class:`~responder.engines.realtime.connection.RealtimeSocket`)
become the seam's typed events through one dispatch table; events of no interest are skipped
without being looked at, and an event with a field of the wrong type is logged
(``realtime.event_invalid``) and skipped rather than half-handled. Commands become client
events built in :mod:`responder.engines.realtime.protocol`.

The hand-over is the supervisor tool call (``response.function_call_arguments.done``); its
answer is a ``function_call_output`` item, spoken by the ``response.create`` the controller
asks for once no response is active.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

from openai import AsyncOpenAI
from structlog.typing import FilteringBoundLogger

from callrecord.history import APPEND, HEAD, HistoryItem
from infra import possessive
from infra.logs import LogBudget
from responder.core import engine as ev
from responder.core.engine import AudioNow, EngineName, Line, Purpose, Restored
from responder.engines.realtime import protocol
from responder.engines.realtime.connection import RealtimeSocket, open_realtime
from responder.engines.realtime.delta_frame import audio_delta
from responder.engines.realtime.event_shape import shape_problem
from responder.engines.realtime.replay import REPLAY_LIMIT, awaits_answer, replay_events

DTMF_DIGITS = frozenset("0123456789*#ABCD")

Raw = dict[str, Any]


class RealtimeEngine:
    name: EngineName = "realtime"
    requests_replies = True

    def __init__(self, conn: RealtimeSocket, session: dict[str, Any], log: FilteringBoundLogger) -> None:
        self.conn = conn
        self.session = session
        self.log = log
        self._restored: set[str] = set()  # items we put back: the server echoes them
        self._watch_failures = LogBudget()

    # -- events in -------------------------------------------------------------------------
    async def events(self) -> AsyncIterator[ev.EngineEvent]:
        async for raw in self.conn.events():
            kind = raw.get("type")
            if kind == _AUDIO_DELTA:  # the hot path: 50 a second, three fields read
                audio = _audio_fast(raw)
                if audio is not None:
                    yield audio
                    continue
            translate = _TRANSLATE.get(kind) if isinstance(kind, str) else None
            if translate is None:
                continue  # unknown or uninteresting events are ignored, never fatal
            problem = shape_problem(raw)
            if problem is not None:  # a field of the wrong type: skipped, not half-handled
                self.log.warning("realtime.event_invalid", event_type=kind, problem=problem)
                continue
            try:
                event = translate(self, raw)
            except (KeyError, TypeError, ValueError) as exc:  # a shape the checks above missed
                self.log.warning("realtime.event_invalid", event_type=kind, problem=repr(exc)[:200])
                continue
            if event is not None:
                yield event

    def _item_added(self, raw: Raw) -> ev.ItemAdded | None:
        item = raw.get("item") or {}
        item_id = item.get("id")
        if not item_id or item_id in self._restored:
            return None
        prev = raw.get("previous_item_id")
        after = prev if prev else (HEAD if "previous_item_id" in raw else APPEND)
        conversation_item = _conversation_item(item, item_id)
        return ev.ItemAdded(conversation_item, after) if conversation_item is not None else None

    def _error(self, raw: Raw) -> ev.EngineError:
        error = raw.get("error") or {}
        client_event_id = error.get("event_id")
        return ev.EngineError(
            code=error.get("code"), error_type=error.get("type"), message=error.get("message"),
            param=error.get("param"), client_event_id=client_event_id,
            client_event_type=self.conn.sent_type(client_event_id),
        )  # fmt: skip

    # -- commands out ----------------------------------------------------------------------
    async def start(self) -> None:
        await self.conn.send(protocol.session_update(self.session))

    async def append_audio(self, b64_audio: str) -> None:
        await self.conn.append_audio(b64_audio)

    def append_audio_now(self, b64_audio: str) -> bool:
        return self.conn.append_audio_now(b64_audio)

    def new_request_id(self) -> str:
        return self.conn.new_event_id()

    def watch_barge_in(self, now: Callable[[], None]) -> None:
        def seen(message: bytes) -> bool:  # only the very event the pump handles next
            if len(message) > _SPEECH_STARTED_MAX:  # not one: not parsed twice here
                return False
            raw = _parsed(message)
            if isinstance(raw, dict) and raw.get("type") == _SPEECH_STARTED_TYPE and not shape_problem(raw):
                now()
            return False  # the pump handles it as well

        self.conn.watch(_SPEECH_STARTED_MARK, self._guarded(seen))
        self._drop_unused()

    def take_audio(self, now: AudioNow) -> None:
        def seen(message: bytes) -> bool:  # the very event the pump would get next
            if len(message) > _TAKEN_MAX:  # too large to go out at once: not parsed twice
                return False
            fast = audio_delta(message)  # the usual compact delta, without json.loads
            if fast is not None:
                return now(*fast)
            raw = _parsed(message)
            if type(raw) is not dict or raw.get("type") != _AUDIO_DELTA:
                return False
            audio = _audio_fast(raw)  # anything odd: the pump's general path logs and skips it
            return audio is not None and now(audio.item_id, audio.reply_id, audio.audio)

        self.conn.watch(_AUDIO_DELTA_MARK, self._guarded(seen))
        self._drop_unused()

    def _drop_unused(self) -> None:
        """Events of no use dropped as they are read (:func:`_unused`). Watched again after each
        other watch, which puts it last: a message gets the first watch whose marker it has, and
        this marker is in every event."""
        self.conn.watch(_TYPE_MARK, self._guarded(_unused))

    def _guarded(self, seen: Callable[[bytes], bool]) -> Callable[[bytes], bool]:
        """``seen`` in the socket's read callback: what it raises is logged (within a budget,
        with the call's id) and the message left to the pump."""

        def guarded(message: bytes) -> bool:
            try:
                return seen(message)
            except Exception as exc:
                if self._watch_failures.allow():
                    self.log.error("realtime.watch_failed", error=repr(exc)[:200])
                return False

        return guarded

    async def request_reply(self, request_id: str, purpose: Purpose, line: Line | None = None) -> None:
        await self.conn.send(protocol.response_create(request_id, purpose, line))

    async def answer_handover(self, handover_id: str, text: str) -> None:
        await self.conn.send(protocol.function_call_output(handover_id, text))

    async def stop_speaking(self, item_id: str, heard_ms: int) -> None:
        await self.conn.send(protocol.item_truncate(item_id, heard_ms))

    async def cancel_reply(self, reply_id: str) -> None:
        await self.conn.send(protocol.response_cancel(reply_id))

    async def restore(self, items: Sequence[HistoryItem]) -> Restored:
        """Replay the newest items back to back (:mod:`responder.engines.realtime.replay`)."""
        events = replay_events(items, REPLAY_LIMIT)
        replayed = [e["item"] for e in events]
        self._restored.update(i["id"] for i in replayed)
        for event in events:
            await self.conn.send(event)
        return Restored(
            item_ids=frozenset(i["id"] for i in replayed),
            handovers=frozenset(i["call_id"] for i in replayed if i["type"] == "function_call"),
            answered=frozenset(i["call_id"] for i in replayed if i["type"] == "function_call_output"),
            awaits_reply=awaits_answer(events),
        )

    async def close(self) -> None:
        await self.conn.close()


def _parsed(message: bytes) -> object:
    """The message's JSON, or None when it is not JSON (the pump logs it: realtime.frame_invalid)."""
    try:
        return json.loads(message)
    except (ValueError, RecursionError):
        return None


def _unused(message: bytes) -> bool:
    """Whether the message is one of the events the call has no use for (:data:`_UNUSED`), read
    next by the socket: it is dropped there, unparsed, instead of waking the call's pump only to
    be skipped. Its type is the first field (or the second, after the event_id), as the API and
    the simulator write it; in any other form the pump reads and skips it."""
    head = _EVENT_TYPE.match(message)
    return head is not None and head[1] in _UNUSED


def _conversation_item(item: Raw, item_id: str) -> ev.ConversationItem | None:
    kind, role = item.get("type"), item.get("role")
    if kind == "message" and role in ("user", "assistant"):
        return ev.ConversationItem(item_id, "message", role, text=_content_text(item))
    if kind == "function_call":
        return ev.ConversationItem(
            item_id, "function_call", "assistant", name=item.get("name"),
            tool_call_id=item.get("call_id"), arguments=item.get("arguments") or None,
        )  # fmt: skip
    if kind == "function_call_output":
        return ev.ConversationItem(
            item_id, "function_call_output", "system", tool_call_id=item.get("call_id"),
            output=item.get("output"),
        )  # fmt: skip
    return None


def _content_text(item: Raw) -> str | None:
    for part in item.get("content") or []:
        text = part.get("transcript") or part.get("text")
        if text:
            return str(text)
    return None


def _audio(_: RealtimeEngine, raw: Raw) -> ev.AgentAudio | None:
    """Hot path: the delta's base64 text is passed on as it came (see :func:`_splices`)."""
    delta, item_id = raw.get("delta"), raw.get("item_id")
    if delta and not _splices(delta):
        raise ValueError("delta is not base64 text")
    return ev.AgentAudio(item_id, raw.get("response_id"), delta) if delta and item_id else None


def _splices(delta: str) -> bool:
    """Whether the delta can go into a caller's frame as it is: the Twilio transport splices
    it between the quotes of a JSON string, so a quote or a backslash in it (no base64 text
    has either) would let the server write the rest of the frame, a control character (decoded
    from a JSON escape such as ``\\n``) makes the frame invalid JSON, and a lone surrogate
    cannot be encoded at all. Printable ASCII but those two only: one scan, not a decode."""
    return delta.isascii() and not delta.encode().translate(None, _SPLICE_SAFE)


_SPLICE_SAFE = bytes(c for c in range(0x20, 0x7F) if c not in b'"\\')  # what a JSON string may hold as is


_AUDIO_DELTA = "response.output_audio.delta"
_AUDIO_DELTA_MARK = f'"{_AUDIO_DELTA}"'.encode()


def _audio_fast(raw: Raw) -> ev.AgentAudio | None:
    """An audio delta whose three fields are strings, without the general shape check; None
    sends anything else down the general path (which logs and skips a malformed one)."""
    delta, item_id, reply_id = raw.get("delta"), raw.get("item_id"), raw.get("response_id")
    if type(delta) is str and type(item_id) is str and delta and item_id and _splices(delta) and (
        reply_id is None or type(reply_id) is str
    ):
        return ev.AgentAudio(item_id, reply_id, delta)
    return None


def _reply_started(_: RealtimeEngine, raw: Raw) -> ev.ReplyStarted:
    response = raw.get("response") or {}
    return ev.ReplyStarted(response.get("id", ""), (response.get("metadata") or {}).get("purpose"))


def _reply_ended(_: RealtimeEngine, raw: Raw) -> ev.ReplyEnded:
    response = raw.get("response") or {}
    reason = (response.get("status_details") or {}).get("reason")
    return ev.ReplyEnded(response.get("id", ""), response.get("status"), reason, response.get("usage"))


def _dtmf(_: RealtimeEngine, raw: Raw) -> ev.Dtmf | None:
    digit = raw.get("event")
    return ev.Dtmf(digit) if isinstance(digit, str) and len(digit) == 1 and digit in DTMF_DIGITS else None


def _truncated(_: RealtimeEngine, raw: Raw) -> ev.AgentTruncated | None:
    item_id = raw.get("item_id")
    return ev.AgentTruncated(item_id, int(raw.get("audio_end_ms") or 0)) if item_id else None


def _transcript_delta(_: RealtimeEngine, raw: Raw) -> ev.AgentTranscriptDelta | None:
    item_id = raw.get("item_id")
    return ev.AgentTranscriptDelta(item_id, raw.get("delta") or "") if item_id else None


def _handover(_: RealtimeEngine, raw: Raw) -> ev.HandoverRequested:
    arguments = raw.get("arguments") or ""
    return ev.HandoverRequested(raw["call_id"], raw.get("name"), arguments, raw.get("item_id"))


_SPEECH_STARTED = ev.CallerSpeechStarted()
_SPEECH_STARTED_TYPE = "input_audio_buffer.speech_started"
_SPEECH_STARTED_MARK = f'"{_SPEECH_STARTED_TYPE}"'.encode()
_SPEECH_STARTED_MAX = 4096  # bytes: the event is ~150 (type, event_id, audio_start_ms, item_id)
_TAKEN_MAX = 65536  # bytes: a delta larger than this would not fit one caller frame at once
_SPEECH_STOPPED = ev.CallerSpeechStopped()
_READY = ev.SessionReady()

# Server events the pump skips (none is in _TRANSLATE): the real API sends about ten a turn
# (content parts, output items, audio done, committed, rate limits, transcription deltas …)
_UNUSED: Final = frozenset(
    t.encode() for t in (
        "session.created", "conversation.created", "conversation.item.done", "conversation.item.deleted",
        "conversation.item.retrieved", "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.segment", "input_audio_buffer.committed",
        "input_audio_buffer.cleared", "input_audio_buffer.timeout_triggered", "output_audio_buffer.started",
        "output_audio_buffer.stopped", "output_audio_buffer.cleared", "rate_limits.updated",
        "response.output_item.added", "response.output_item.done", "response.content_part.added",
        "response.content_part.done", "response.output_audio.done", "response.output_text.delta",
        "response.output_text.done", "response.function_call_arguments.delta",
    )
)  # fmt: skip
_TYPE_MARK: Final = b'"type":"'
_EVENT_TYPE: Final = possessive.regex(
    rb'\{(?:"event_id":"[A-Za-z0-9_-]{1,128}+",)?+"type":"([a-z_.]{1,64}+)"[,}]'
)

_TRANSLATE: dict[str, Callable[[RealtimeEngine, Raw], ev.EngineEvent | None]] = {
    "session.updated": lambda _, raw: _READY,
    "conversation.item.added": RealtimeEngine._item_added,
    "conversation.item.created": RealtimeEngine._item_added,  # the beta name, still accepted
    "conversation.item.input_audio_transcription.completed": lambda _, raw: ev.CallerTranscript(
        raw["item_id"], (raw.get("transcript") or "").strip()
    ),
    "conversation.item.input_audio_transcription.failed": lambda _, raw: ev.CallerTranscriptFailed(
        raw["item_id"], raw.get("error")
    ),
    "conversation.item.truncated": _truncated,
    "input_audio_buffer.dtmf_event_received": _dtmf,
    _SPEECH_STARTED_TYPE: lambda _, raw: _SPEECH_STARTED,
    "input_audio_buffer.speech_stopped": lambda _, raw: _SPEECH_STOPPED,
    "response.created": _reply_started,
    "response.done": _reply_ended,
    "response.output_audio.delta": _audio,
    "response.output_audio_transcript.delta": _transcript_delta,
    "response.output_audio_transcript.done": lambda _, raw: ev.AgentTranscriptDone(
        raw.get("item_id") or "", (raw.get("transcript") or "").strip()
    ),
    "response.function_call_arguments.done": _handover,
    "error": RealtimeEngine._error,
}


@asynccontextmanager
async def open_engine(
    client: AsyncOpenAI, call_id: str, session: dict[str, Any], log: FilteringBoundLogger, *,
    model: str | None = None, sideband_call_id: str | None = None,
) -> AsyncIterator[RealtimeEngine]:  # fmt: skip
    """A Realtime session for one call: a new one for ``model``, or a sideband to an existing
    SIP/WebRTC call (``sideband_call_id``), configured with ``session`` on :meth:`start`."""
    async with open_realtime(client, call_id, model=model, sideband_call_id=sideband_call_id) as conn:
        yield RealtimeEngine(conn, session, log)
