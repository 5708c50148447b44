"""Realtime server events into the call controller, and the raw frame decoding before it.

The controller runs on the real :class:`RealtimeEngine` over an in-memory
:class:`RealtimeSocket` that yields the fuzzed events and records the client events sent, with
the real Redis history.
Properties: ``run()`` never raises, no handler fails on garbage (``call.event_handler_failed``),
everything sent is valid JSON with a client event type, and items recorded before the fuzzed
events are untouched.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import math
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis
from structlog.testing import capture_logs
from websockets.exceptions import ConnectionClosed

from callrecord.decisions import Decision
from callrecord.history import APPEND, CallHistory, HistoryItem
from responder.core.contract import finish_kept_tasks
from responder.core.controller import CallController, ControllerConfig
from responder.core.tools import SUPERVISOR_TOOL
from responder.engines.realtime.connection import RealtimeConnection
from responder.engines.realtime.engine import RealtimeEngine
from responder.engines.realtime.model_socket import WATCH_SPAN
from responder.engines.realtime.protocol import ClientEvent
from tests.fuzz.strategies import broken, huge_text, json_values, not_objects, text

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

CLIENT_TYPES = {
    "session.update", "response.create", "response.cancel", "conversation.item.create",
    "conversation.item.truncate", "input_audio_buffer.append",
}  # fmt: skip
KNOWN_TYPES = [
    "session.updated",
    "conversation.item.added",
    "conversation.item.created",
    "conversation.item.input_audio_transcription.completed",
    "conversation.item.input_audio_transcription.failed",
    "conversation.item.truncated",
    "input_audio_buffer.dtmf_event_received",
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "response.created",
    "response.done",
    "response.output_audio.delta",
    "response.output_audio_transcript.delta",
    "response.output_audio_transcript.done",
    "response.function_call_arguments.done",
    "error",
]
UNKNOWN_TYPES = ["response.audio.delta", "rate_limits.updated", "", "response.output_text.delta"]
# a small pool so that events refer to each other (and to items nobody announced)
ids = st.sampled_from(["item_1", "item_2", "item_3", "resp_1", "resp_2", "call_1", ""]) | st.text(max_size=12)
maybe = st.none().__or__
b64_audio = st.binary(max_size=400).map(lambda b: base64.b64encode(b).decode())
arguments = st.one_of(
    st.dictionaries(st.sampled_from(["context", "reason", "x"]), json_values, max_size=2).map(json.dumps),
    text,
    st.just("[" * 5000),
)


@st.composite
def plausible_event(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    """A structurally plausible event of ``kind`` (fields of the right names, values fuzzed)."""
    event: dict[str, Any] = {"type": kind, "event_id": "event_" + draw(st.text(max_size=6))}
    if kind.startswith("conversation.item.added") or kind == "conversation.item.created":
        part = st.fixed_dictionaries(
            {"type": st.sampled_from(["input_audio", "output_audio", "text"])},
            optional={"transcript": maybe(text), "text": maybe(text)},
        )
        item = draw(
            st.fixed_dictionaries(
                {
                    "id": ids,
                    "type": st.sampled_from(["message", "function_call", "function_call_output", "other"]),
                },
                optional={
                    "role": st.sampled_from(["user", "assistant", "system", "tool"]),
                    "content": st.lists(part, max_size=3),
                    "name": st.sampled_from([SUPERVISOR_TOOL, "end_call"]) | text,
                    "call_id": ids,
                    "arguments": arguments,
                    "output": text,
                },
            )
        )
        event["item"] = item
        if draw(st.booleans()):
            event["previous_item_id"] = draw(maybe(ids))
    elif kind.startswith("conversation.item.input_audio_transcription"):
        event.update(item_id=draw(ids), transcript=draw(text), error=draw(maybe(st.just({"message": "x"}))))
    elif kind == "conversation.item.truncated":
        event.update(
            item_id=draw(ids),
            audio_end_ms=draw(st.integers(-5, 10**12) | st.floats(allow_nan=True, allow_infinity=True)),
        )
    elif kind == "input_audio_buffer.dtmf_event_received":
        event["event"] = draw(st.sampled_from(list("0123456789*#")) | text)
    elif kind.startswith("input_audio_buffer.speech"):
        event.update(item_id=draw(ids), audio_start_ms=draw(st.integers(0, 10**6)))
    elif kind in ("response.created", "response.done"):
        purpose = st.sampled_from(["answer", "hold_line", "greeting", "action_line", "turn"])
        metadata = st.fixed_dictionaries({}, optional={"purpose": purpose | text})
        response = st.fixed_dictionaries(
            {"id": ids},
            optional={
                "status": st.sampled_from(["completed", "cancelled", "failed", "incomplete", "in_progress"]),
                "metadata": maybe(metadata),
                "status_details": maybe(st.just({"reason": "turn_detected"})),
                "usage": maybe(
                    st.fixed_dictionaries(
                        {}, optional={"input_tokens": json_values, "output_tokens": json_values}
                    )
                ),
            },
        )
        event["response"] = draw(response)
    elif kind == "response.output_audio.delta":
        event.update(response_id=draw(ids), item_id=draw(ids), delta=draw(b64_audio | text))
    elif kind.startswith("response.output_audio_transcript"):
        event.update(item_id=draw(ids), delta=draw(text), transcript=draw(text))
    elif kind == "response.function_call_arguments.done":
        name = st.sampled_from([SUPERVISOR_TOOL, "end_call", "escalate_to_human", "nope"]) | text
        event.update(name=draw(name), call_id=draw(ids), item_id=draw(ids), arguments=draw(arguments))
    elif kind == "error":
        event["error"] = draw(
            st.fixed_dictionaries(
                {"type": st.just("invalid_request_error")},
                optional={"code": json_values, "message": text, "event_id": maybe(ids), "param": text},
            )
        )
    return event


FIELDS = ["type", "item_id", "response_id", "call_id", "delta", "transcript", "name", "arguments",
          "previous_item_id", "event", "response", "item", "error", "audio_end_ms"]  # fmt: skip


@st.composite
def server_event(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(KNOWN_TYPES + UNKNOWN_TYPES))
    return broken(draw, draw(plausible_event(kind)), FIELDS)  # then break it a little


def marker_near_start(message: bytes, marker: bytes) -> bool:
    return message.find(marker, 0, WATCH_SPAN) >= 0


class FakeRealtime:
    """A :class:`RealtimeSocket` in memory: the fuzzed server events in, client events recorded."""

    def __init__(self, call_id: str, events: list[dict[str, Any]]) -> None:
        self.call_id = call_id
        self._events = events
        self._ids = itertools.count(1)
        self._types: dict[str, str] = {}
        self.sent: list[dict[str, Any]] = []
        self.audio: list[str] = []
        self.closed = False
        self._watches: dict[bytes, Callable[[bytes], bool]] = {}

    def new_event_id(self) -> str:
        return f"evt_{next(self._ids)}"

    async def send(self, event: ClientEvent) -> str:
        json.dumps(event, allow_nan=False)  # what goes on the wire must be strict JSON
        event_id = event.get("event_id") or self.new_event_id()
        event["event_id"] = event_id
        self._types[event_id] = event["type"]
        self.sent.append(dict(event))
        return event_id

    def append_audio_now(self, b64_audio: str) -> bool:
        return False  # always the awaited path, as a socket that must wait

    async def append_audio(self, b64_audio: str) -> None:
        self.audio.append(b64_audio)

    def sent_type(self, event_id: str | None) -> str | None:
        return self._types.get(event_id) if event_id else None

    def watch(self, marker: bytes, seen: Callable[[bytes], bool]) -> bool:
        self._watches[marker] = seen
        return True

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        for event in self._events:
            message = json.dumps(event).encode()
            # as the model socket does with the reader waiting: a watch that takes it handles it
            seen = next((s for m, s in self._watches.items() if marker_near_start(message, m)), None)
            if seen is None or not seen(message):
                yield event
            await asyncio.sleep(0)

    async def close(self) -> None:
        self.closed = True


class RecordingCaller:
    def __init__(self) -> None:
        self.audio: list[tuple[str, str | None]] = []
        self.clears = 0
        self.turn = 0

    async def send_audio(self, b64_audio: str, mark: str | None) -> None:
        assert isinstance(b64_audio, str) and isinstance(mark, str | None)
        self.audio.append((b64_audio, mark))

    async def send_mark(self, mark: str) -> None:
        return None

    async def clear_audio(self) -> None:
        self.clears += 1

    def send_audio_now(self, b64_audio: str, mark: Callable[[], str | None]) -> bool:
        self.turn += 1  # every other chunk written at once, the others awaited
        if self.turn % 2:
            return False
        name = mark()
        assert isinstance(b64_audio, str) and isinstance(name, str | None)
        self.audio.append((b64_audio, name))
        return True

    def clear_now(self) -> bool:  # the barge-in's early clear, written at once
        self.clears += 1
        return True


async def quick_decision(
    call_id: str, context: str, *, user_item_id: str | None = None, **_: object
) -> Decision:
    assert isinstance(context, str)
    return Decision(call_id=call_id, user_item_id=user_item_id, context=context, text="Sixty days.")


CONFIG = ControllerConfig(transcript_wait_s=0.01, hold_delay_s=30.0, supervisor_deadline_s=2.0)
PRE = [
    HistoryItem(id="pre_user", kind="message", role="user", text="What is the return window?"),
    HistoryItem(id="pre_assistant", kind="message", role="assistant", text="Let me check."),
]
# failures the controller reports by design, not handler crashes
EXPECTED_ERRORS = {"call.answer_not_spoken"}


async def _run_controller(redis_url: str, events: list[dict[str, Any]]) -> None:
    redis = Redis.from_url(redis_url)
    history = CallHistory(redis, prefix="fuzz-" + uuid.uuid4().hex[:8], ttl_s=120)
    call_id = "CAfuzz" + uuid.uuid4().hex[:8]
    await history.start_call(call_id, transport="twilio")
    for item in PRE:
        await history.add_item(call_id, item, APPEND)
    before = [await history.get_item(call_id, item.id) for item in PRE]
    rt = FakeRealtime(call_id, events)
    caller = RecordingCaller()
    engine = RealtimeEngine(rt, {}, structlog.get_logger("call").bind(call_id=call_id))
    ctl = CallController(call_id, engine, caller, history, quick_decision, CONFIG)
    try:
        with capture_logs() as logs:
            ctl.caller_mark("m1")  # the transport side may echo marks at any time
            await asyncio.wait_for(ctl.run(), 20)
            await finish_kept_tasks(5.0)
        failed = [e for e in logs if e["event"] == "call.event_handler_failed"]
        assert not failed, failed
        errors = [e for e in logs if e.get("log_level") in ("error", "critical", "exception")]
        assert all(e["event"] in EXPECTED_ERRORS for e in errors), errors
        assert ctl.closed and rt.closed
        assert all(e["type"] in CLIENT_TYPES for e in rt.sent), rt.sent
        truncates = [e for e in rt.sent if e["type"] == "conversation.item.truncate"]
        assert all(isinstance(t["audio_end_ms"], int) and t["audio_end_ms"] >= 0 for t in truncates)
        after = [await history.get_item(call_id, item.id) for item in PRE]
        assert after == before
        assert (await history.get_meta(call_id))["status"] == "ended"
    finally:
        await redis.aclose()


@FUZZ
@given(st.lists(server_event(), max_size=25))
@example([{"type": ["response.done"]}])  # was: TypeError (unhashable type) out of run()
@example([{"type": {"a": 1}}])
@example([{"type": "response.created", "response": ["resp_1"]}])  # was: event_handler_failed
@example([{"type": "response.created", "response": {"id": ["r"]}},
          {"type": "input_audio_buffer.speech_started"}])  # fmt: skip
@example([{"type": "response.output_audio.delta", "item_id": "i", "delta": 5}])
@example([{"type": "response.output_audio.delta", "item_id": ["i"], "delta": "AAAA"}])
@example([{"type": "response.output_audio_transcript.done", "item_id": "i", "transcript": 3}])
@example([{"type": "conversation.item.added", "item": {"id": "i", "type": "message", "role": "user",
           "content": ["hello"]}}])  # fmt: skip
@example([{"type": "conversation.item.truncated", "item_id": "i", "audio_end_ms": "soon"}])
@example([{"type": "conversation.item.truncated", "item_id": "i", "audio_end_ms": math.inf}])
@example([{"type": "conversation.item.input_audio_transcription.completed", "transcript": "hi"}])
@example([{"type": "response.done", "response": {"id": "r", "usage": [1]}}])
@example([{"type": "response.created", "response": {"id": "r", "metadata": "answer"}}])
@example([{"type": "error", "error": {"event_id": ["evt_1"]}}])
@example([{"type": "response.function_call_arguments.done", "name": ["end_call"], "call_id": "c"}])
@example([{"type": "response.function_call_arguments.done", "name": SUPERVISOR_TOOL, "call_id": "c",
           "arguments": {"context": "x"}}])  # fmt: skip
@example([{"type": "conversation.item.added", "item": {"id": "i", "type": "function_call", "name": 7}}])
def test_server_events_never_break_the_call_loop(redis_url: str, events: list[dict[str, Any]]) -> None:
    asyncio.run(_run_controller(redis_url, events))


OUT_OF_ORDER = [
    {"type": "session.updated", "session": {}},
    {"type": "response.done", "response": {"id": "resp_1", "status": "completed"}},
    {"type": "conversation.item.truncated", "item_id": "item_unknown", "audio_end_ms": 120},
    {"type": "response.output_audio.delta", "response_id": "resp_1", "item_id": "item_a", "delta": "AAAA"},
    {"type": "input_audio_buffer.speech_started", "item_id": "item_u"},
    {"type": "response.created", "response": {"id": "resp_1", "metadata": {"purpose": "answer"}}},
    {"type": "response.output_audio_transcript.done", "item_id": "item_a", "transcript": "Hi"},
    {"type": "conversation.item.input_audio_transcription.completed", "item_id": "item_u",
     "transcript": "hi"},
    {"type": "response.function_call_arguments.done", "name": SUPERVISOR_TOOL, "call_id": "call_1",
     "item_id": "item_f", "arguments": '{"context": "returns"}'},
    {"type": "input_audio_buffer.speech_stopped", "item_id": "item_u"},
    {"type": "error", "error": {"type": "invalid_request_error", "event_id": "evt_1"}},
]  # fmt: skip


@FUZZ
@given(st.permutations(OUT_OF_ORDER))
def test_out_of_order_sequences(redis_url: str, events: list[dict[str, Any]]) -> None:
    asyncio.run(_run_controller(redis_url, events))


# -- raw frames: RealtimeConnection.events() --------------------------------------------------


class FakeSdkConnection:
    """The SDK connection's ``recv_bytes`` over a list of raw frames, then a closed socket."""

    def __init__(self, frames: list[bytes]) -> None:
        self._frames = list(frames)

    async def recv_bytes(self) -> bytes:
        if not self._frames:
            raise ConnectionClosed(None, None)
        return self._frames.pop(0)


raw_frames = st.one_of(
    st.binary(max_size=200),
    not_objects.map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.dictionaries(st.text(max_size=8), json_values, max_size=4).map(lambda d: json.dumps(d).encode()),
    huge_text.map(lambda s: json.dumps({"type": "x", "delta": s}).encode()),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(raw_frames, max_size=12))
@example([b"[" * 100_000])  # was: RecursionError out of events()
@example([b"\xff\xfe", b"{}"])
def test_raw_frames_decode_to_dicts_or_are_skipped(frames: list[bytes]) -> None:
    def expected(raw: bytes) -> bool:
        try:
            return isinstance(json.loads(raw), dict)
        except (ValueError, RecursionError):
            return False

    async def collect() -> list[dict[str, Any]]:
        rt = RealtimeConnection(FakeSdkConnection(frames), "CAraw")  # type: ignore[arg-type]
        return [event async for event in rt.events()]

    events = asyncio.run(collect())
    assert all(isinstance(e, dict) for e in events)
    assert len(events) == sum(expected(f) for f in frames)
