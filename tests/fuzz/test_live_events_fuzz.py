"""GPT-Live server events into the call controller, over the real :class:`LiveEngine`.

A hostile or buggy Live server: the engine reads fuzzed events (plausible shapes, then broken a
little; out of order; repeated) from an in-memory socket while the test plays the caller's
audio between them, with the real Redis history and a supervisor double.
Properties: the call loop (``run_sessions``) never raises, no handler fails
(``call.event_handler_failed``) and no task dies unseen, only Live client events are sent and
nothing but ``session.start`` before ``session.started``, every append fits the server's 500
tokens, a delegation id is one the server created and is answered at most once, the
supervisor runs at most once per delegation, and the items recorded before the fuzzed events
are untouched.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import structlog
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis
from structlog.testing import capture_logs

from callrecord.decisions import Decision, Trigger
from callrecord.history import APPEND, CallHistory, HistoryItem
from responder.core.contract import finish_kept_tasks
from responder.core.controller import CallController, ControllerConfig
from responder.core.sessions import run_sessions
from responder.engines.live.engine import LiveEngine
from responder.engines.live.protocol import MAX_APPEND_TOKENS, estimated_tokens
from tests.fuzz.strategies import broken, json_values, text

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

CLIENT_TYPES = {
    "session.start", "session.update", "session.input_audio.append", "session.commentary.append",
    "session.thinking.append", "session.close",
}  # fmt: skip
APPENDS = {"session.commentary.append", "session.thinking.append"}
KNOWN_TYPES = [
    "session.started",
    "session.input_transcript.delta",
    "session.output_transcript.delta",
    "session.output_audio.delta",
    "session.delegation.created",
    "session.input_audio.append",
    "transport.dtmf.received",
    "error",
]
UNKNOWN_TYPES = ["session.usage.updated", "session.commentary.appended", "info", "session.closed", ""]
SESSION = {"model": "gpt-live-1.1", "audio": {"format": {"type": "audio/pcmu", "rate": 8000}}}
VOICED = base64.b64encode(bytes([0x20, 0xA0] * 400)).decode()  # 100 ms of loud μ-law
SILENT = base64.b64encode(b"\xff" * 800).decode()
CALLER_FRAME = base64.b64encode(b"\xff" * 160).decode()  # 20 ms
LOUD_CALLER_FRAME = base64.b64encode(bytes([0x10, 0x90] * 80)).decode()
# a long answer, partly in another script: the engine must still fit it into 500 tokens
ANSWER = "Sixty days for most items. " * 40 + "退货期限为六十天。" * 80

ids = st.sampled_from(["dlg_1", "dlg_2", "dlg_3", ""]) | st.text(max_size=8)
timeline = st.one_of(
    st.integers(0, 20_000), st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 10**15),
    st.just(10**400),
)
b64_audio = st.sampled_from([VOICED, SILENT, "", "not base64!", "AAA"]) | st.binary(max_size=400).map(
    lambda b: base64.b64encode(b).decode()
)


@st.composite
def plausible_event(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    """A structurally plausible Live event of ``kind`` (the right field names, values fuzzed)."""
    event: dict[str, Any] = {"type": kind, "event_id": "event_" + draw(st.text(max_size=6))}
    if kind in ("session.input_transcript.delta", "session.output_transcript.delta"):
        event.update(delta=draw(st.sampled_from(["Can I ", "return it?", " ", ""]) | text),
                     start_ms=draw(timeline), end_ms=draw(timeline))  # fmt: skip
    elif kind == "session.output_audio.delta":
        event["delta"] = draw(b64_audio)
    elif kind == "session.delegation.created":
        target = st.sampled_from(["client", "responses"])
        kind_of = st.just("delegation")
        delegation = st.fixed_dictionaries({"id": ids}, optional={"target": target, "type": kind_of})
        event.update(delegation=draw(delegation), offset_ms=draw(timeline))
    elif kind == "session.input_audio.append":
        event["audio"] = draw(b64_audio)
    elif kind == "transport.dtmf.received":
        event["event"] = draw(st.sampled_from(list("0123456789*#")) | text)
    elif kind == "error":
        error = st.fixed_dictionaries(
            {"type": st.just("invalid_request_error")},
            optional={"code": json_values, "message": text, "client_event_id": json_values, "param": text},
        )
        event["error"] = draw(error)
    elif kind == "session.started":
        event["session"] = {"id": "live_" + draw(st.text(max_size=6))}
    return event


FIELDS = ["type", "delta", "start_ms", "end_ms", "offset_ms", "delegation", "audio", "event", "error",
          "session"]  # fmt: skip


@st.composite
def server_event(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(KNOWN_TYPES + UNKNOWN_TYPES))
    return broken(draw, draw(plausible_event(kind)), FIELDS)  # then break it a little


# a step of the call: a server event, or the caller's audio (frames, loud or not)
steps = st.lists(
    server_event() | st.tuples(st.integers(1, 50), st.booleans()),
    max_size=30,
)


class FakeLive:
    """A Live :class:`RealtimeSocket` in memory: events pushed by the test, client events
    recorded, and where ``session.started`` was delivered."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._types: dict[str, str] = {}
        self.sent: list[dict[str, Any]] = []
        self.audio: list[str] = []
        self.started = False
        self.before_started: list[str] = []  # what was sent before session.started came
        self.closed = False
        self._ids = 0

    def push(self, event: dict[str, Any] | None) -> None:
        self._queue.put_nowait(event)

    def new_event_id(self) -> str:
        self._ids += 1
        return f"evt_{self._ids}"

    async def send(self, event: Mapping[str, object]) -> str:
        json.dumps(event, allow_nan=False)  # what goes on the wire must be strict JSON
        event_id = str(event.get("event_id") or self.new_event_id())
        self._types[event_id] = str(event["type"])
        self.sent.append({**event, "event_id": event_id})
        if not self.started:
            self.before_started.append(str(event["type"]))
        return event_id

    def append_audio_now(self, b64_audio: str) -> bool:
        return False  # always the awaited path, as a socket that must wait

    async def append_audio(self, b64_audio: str) -> None:
        self.audio.append(b64_audio)
        if not self.started:
            self.before_started.append("session.input_audio.append")

    def sent_type(self, event_id: str | None) -> str | None:
        return self._types.get(event_id) if event_id else None

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        while (event := await self._queue.get()) is not None:
            if event.get("type") == "session.started":
                self.started = True
            yield event

    async def close(self) -> None:
        self.closed = True


class Supervisor:
    def __init__(self) -> None:
        self.calls: list[Trigger] = []

    async def __call__(
        self, call_id: str, context: str, *, user_item_id: str | None = None, trigger: Trigger = "tool_call",
        **_: object,
    ) -> Decision:  # fmt: skip
        assert isinstance(context, str)
        self.calls.append(trigger)
        await asyncio.sleep(0.005)
        return Decision(call_id=call_id, user_item_id=user_item_id, context=context, text=ANSWER)


class Caller:
    async def send_audio(self, b64_audio: str, mark: str | None) -> None:
        assert isinstance(b64_audio, str) and isinstance(mark, str | None)

    async def send_mark(self, mark: str) -> None:
        return None

    async def clear_audio(self) -> None:
        return None

    def send_audio_now(self, b64_audio: str, mark: Callable[[], str | None]) -> bool:
        return False

    def clear_now(self) -> bool:
        return False


CONFIG = ControllerConfig(transcript_wait_s=0.01, hold_delay_s=0.02, supervisor_deadline_s=2.0)
PRE = [
    HistoryItem(id="pre_user", kind="message", role="user", text="What is the return window?"),
    HistoryItem(id="pre_assistant", kind="message", role="assistant", text="Let me check."),
]


async def _run(redis_url: str, script: list[Any]) -> None:
    redis = Redis.from_url(redis_url)
    history = CallHistory(redis, prefix="fuzz-" + uuid.uuid4().hex[:8], ttl_s=120)
    call_id = "CAfuzz" + uuid.uuid4().hex[:8]
    await history.start_call(call_id, transport="twilio", engine="live")
    for item in PRE:
        await history.add_item(call_id, item, APPEND)
    before = [await history.get_item(call_id, item.id) for item in PRE]
    live = FakeLive(call_id)
    engine = LiveEngine(live, SESSION, structlog.get_logger("call").bind(call_id=call_id), bytes_per_ms=8.0,
                        recovery_s=0.01)  # fmt: skip
    supervisor = Supervisor()
    ctl = CallController(call_id, engine, Caller(), history, supervisor, CONFIG)

    @asynccontextmanager
    async def opener() -> AsyncIterator[LiveEngine]:
        yield engine

    log = structlog.get_logger("call").bind(call_id=call_id)
    loop = asyncio.get_running_loop()
    unseen: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: unseen.append(context))
    try:
        with capture_logs() as logs:
            # the call loop of every transport, without a reconnect (a sideband's)
            running = asyncio.ensure_future(
                run_sessions(opener, lambda _: ctl, caller_connected=lambda: True, log=log, reconnect=False)
            )
            await asyncio.sleep(0)
            for step in script:
                if isinstance(step, tuple):
                    frames, loud = step
                    for _ in range(frames):
                        await ctl.caller_audio(LOUD_CALLER_FRAME if loud else CALLER_FRAME)
                else:
                    live.push(step)
                await asyncio.sleep(0)
            await asyncio.sleep(0.03)  # recovery and hold lines may come
            live.push(None)
            await asyncio.wait_for(running, 20)
            await finish_kept_tasks(5.0)
        failed = [e for e in logs if e["event"] in ("call.event_handler_failed", "gpt_live.task_failed")]
        assert not failed, failed
        errors = [e for e in logs if e.get("log_level") in ("error", "critical", "exception")]
        assert not errors, errors
        assert not unseen, unseen
        # a session ends by its socket closing, or by an error before session.started, only
        dropped = [e for e in logs if e["event"] == "call.realtime_dropped"]
        assert all("SessionRefused" in e["error"] for e in dropped), dropped
        assert ctl.closed and live.closed
        assert set(live.before_started) <= {"session.start", "session.close"}, live.before_started
        assert all(e["type"] in CLIENT_TYPES for e in live.sent), live.sent
        appends = [e for e in live.sent if e["type"] in APPENDS]
        assert all(estimated_tokens(e["content"]) <= MAX_APPEND_TOKENS for e in appends)
        created = {
            e["delegation"]["id"] for e in script
            if isinstance(e, dict) and e.get("type") == "session.delegation.created"
            and isinstance(e.get("delegation"), dict) and isinstance(e["delegation"].get("id"), str)
        }  # fmt: skip
        answered = [e["delegation_id"] for e in appends if e["delegation_id"] is not None]
        assert set(answered) <= created and len(answered) == len(set(answered)), answered
        assert supervisor.calls.count("delegation") <= len(created)
        after = [await history.get_item(call_id, item.id) for item in PRE]
        assert after == before
        assert (await history.get_meta(call_id))["status"] == "ended"
    finally:
        loop.set_exception_handler(None)
        await redis.aclose()


def delegated(delegation_id: str, offset_ms: Any = 1000) -> dict[str, Any]:
    return {"type": "session.delegation.created", "offset_ms": offset_ms,
            "delegation": {"id": delegation_id, "target": "client", "type": "delegation"}}  # fmt: skip


def said(delta: Any, start_ms: Any = 0, end_ms: Any = 200) -> dict[str, Any]:
    return {"type": "session.input_transcript.delta", "delta": delta, "start_ms": start_ms, "end_ms": end_ms}


STARTED = {"type": "session.started", "session": {"id": "live_1"}}


@FUZZ
@given(steps)
@example([STARTED, said("Can I return it?"), delegated("dlg_1"), delegated("dlg_1")])  # was: 2 runs
@example([STARTED, said("Can I return it?"), (45, False), delegated("dlg_1")])  # recovered, then delegated
@example([STARTED, said("Hi", 0, float("inf")), (50, False)])
@example([STARTED, said("Hi", 0, 10**400), delegated("dlg_1", 10**400)])  # was: OverflowError, a drop
@example([STARTED, said("Hi", "soon", 100), delegated("dlg_1", "later")])
@example([STARTED, said(["Hi"]), {"type": "session.delegation.created", "delegation": ["dlg_1"]}])
@example([STARTED, {"type": "error", "error": "boom"}, {"type": "error", "error": {"code": {"a": 1}}}])
@example([STARTED, {"type": "session.output_audio.delta", "delta": VOICED},
          {"type": "session.output_transcript.delta", "delta": "x" * 70_000}, (5, True)])  # fmt: skip
@example([said("early"), delegated("dlg_0"), STARTED])  # before the session started
def test_live_server_events_never_break_the_call_loop(redis_url: str, script: list[Any]) -> None:
    asyncio.run(_run(redis_url, script))


IN_ORDER: list[Any] = [
    STARTED,
    {"type": "session.output_audio.delta", "delta": VOICED},
    {"type": "session.output_transcript.delta", "delta": "Hello!", "start_ms": 0, "end_ms": 300},
    (10, True),
    said("Can I return ", 100, 300),
    said("a used tent?", 300, 500),
    {"type": "session.output_audio.delta", "delta": SILENT},
    delegated("dlg_1", 600),
    said(" Thanks.", 400, 550),
    (45, False),
    delegated("dlg_2", 700),
    {"type": "error", "error": {"type": "invalid_request_error", "client_event_id": "evt_2"}},
]


@settings(FUZZ, max_examples=25)
@given(st.permutations(IN_ORDER))
def test_live_events_out_of_order(redis_url: str, script: list[Any]) -> None:
    asyncio.run(_run(redis_url, script))
