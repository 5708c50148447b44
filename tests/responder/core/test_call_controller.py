"""The call controller through the engine seam only: the in-memory engine double feeds it
typed events and records its commands; the history is the real Redis one.

These are the rules that hold whatever the engine: greeting once, answers never over an
active reply, barge-in at the heard position, late answers dropped, a resumed session with
no second greeting and the parked answer delivered.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from structlog.testing import capture_logs

from callrecord.decisions import Decision
from callrecord.history import CallHistory
from responder.core import engine as ev
from responder.core.contract import finish_kept_tasks
from responder.core.controller import HOLD_LINE_TEXT, CallController, ControllerConfig
from responder.core.parked import ParkedEngine
from responder.core.tools import SUPERVISOR_TOOL
from tests.support.caller import RecordingCaller
from tests.support.clock import Clock
from tests.support.engine import ScriptedEngine
from tests.support.waits import wait_until

CALL = "CAcontroller01"
ASK = '{"relevantContextFromLastUserMessage": "return window for a tent"}'


@dataclass
class Supervisor:
    """A supervisor double: answers after ``delay_s``, remembers what it was asked."""

    text: str = "Tents can be returned within 60 days."
    delay_s: float = 0.0
    asked: list[tuple[str, str | None]] = field(default_factory=list)

    async def __call__(

        self, call_id: str, context: str, *, user_item_id: str | None = None, **_: object

    ) -> Decision:
        self.asked.append((context, user_item_id))
        await asyncio.sleep(self.delay_s)
        return Decision(call_id=call_id, user_item_id=user_item_id, context=context, text=self.text)


Call = tuple[CallController, ScriptedEngine, RecordingCaller]


@pytest.fixture
async def make_call(history: CallHistory) -> AsyncIterator[Callable[..., Awaitable[Call]]]:
    """A controller pumping the double's events; ``greeting`` off unless a test asks."""
    started: list[tuple[CallController, ScriptedEngine, asyncio.Task[None]]] = []

    async def make(supervisor: Supervisor | None = None, **config: Any) -> Call:
        call_id = f"{CALL}{len(started)}"
        await history.start_call(call_id, transport="test")
        engine, caller = ScriptedEngine(), RecordingCaller()
        options = {"transcript_wait_s": 0.5, "hold_delay_s": 30.0, "supervisor_deadline_s": 2.0,
                   "greeting": False, **config}  # fmt: skip
        controller = CallController(
            call_id, engine, caller, history, supervisor or Supervisor(), ControllerConfig(**options)
        )
        started.append((controller, engine, asyncio.create_task(controller.pump())))
        return controller, engine, caller

    yield make
    for controller, engine, pump in started:
        engine.end()
        await controller.close()
        await asyncio.wait_for(pump, 5)
    await finish_kept_tasks(2.0)


def replies(engine: ScriptedEngine) -> list[str]:
    return [purpose for _, purpose, _ in engine.sent("reply")]


def user_turn(item_id: str, after: str = "^") -> ev.ItemAdded:
    return ev.ItemAdded(ev.ConversationItem(item_id, "message", "user"), after)


async def test_the_greeting_is_asked_for_once_and_its_audio_relayed_with_marks(
    make_call: Callable[..., Awaitable[Call]], history: CallHistory
) -> None:
    controller, engine, caller = await make_call(greeting=True)
    engine.push(ev.SessionReady(), ev.SessionReady())
    [(_, purpose, line)] = await engine.until_sent("reply")
    assert (purpose, line) == ("greeting", None)
    engine.push(
        ev.ReplyStarted("r1", "greeting"),
        ev.ItemAdded(ev.ConversationItem("a1", "message", "assistant"), "^"),
        ev.AgentAudio("a1", "r1", "AAAA"),
        ev.AgentAudio("a1", "r1", "BBBB"),
        ev.AgentTranscriptDone("a1", "Hello, this is Robin."),
        ev.ReplyEnded("r1", "completed"),
    )
    await wait_until(lambda: len(caller.audio) == 2)
    assert [a for a, _ in caller.audio] == ["AAAA", "BBBB"]  # passed through untouched
    assert len({m for _, m in caller.audio}) == 2  # a mark of its own per chunk
    await controller.recorder.flush(2.0)
    [item] = await history.get_items(controller.call_id)
    assert (item.text, item.status) == ("Hello, this is Robin.", "completed")
    assert replies(engine) == ["greeting"]  # a second SessionReady asks for nothing


async def test_a_handover_is_answered_by_the_supervisor_once_no_reply_is_active(
    make_call: Callable[..., Awaitable[Call]], history: CallHistory
) -> None:
    supervisor = Supervisor()
    controller, engine, _ = await make_call(supervisor)
    engine.push(
        ev.SessionReady(),
        user_turn("u1"),
        ev.CallerTranscript("u1", "How long do I have to return a tent?"),
        ev.ReplyStarted("r1", None),  # turn detection's own reply: the filler and the tool call
        ev.HandoverRequested("call_1", SUPERVISOR_TOOL, ASK, "f1"),
    )
    await wait_until(lambda: supervisor.asked)
    assert supervisor.asked == [("return window for a tent", "u1")]
    await asyncio.sleep(0.1)
    assert engine.sent("answer") == []  # the filler's reply is still active
    engine.push(ev.ReplyEnded("r1", "completed"))
    [answer] = await engine.until_sent("answer")
    assert answer == ("call_1", "Tents can be returned within 60 days.")
    assert replies(engine)[-1] == "answer"
    assert [c.name for c in engine.commands][-2:] == ["answer", "reply"]  # output first, then the reply
    assert controller.outcomes == ["ok"]


CHUNK = base64.b64encode(bytes(800)).decode()  # 100 ms of μ-law at 8 kHz


async def playing(controller: CallController, engine: ScriptedEngine, caller: RecordingCaller,
                  *transcript: str, chunks: int = 5, heard: int = 2) -> None:
    """The greeting reply r1 (item a1) relayed in ``chunks`` chunks, ``heard`` of them played."""
    engine.push(
        ev.SessionReady(), ev.ReplyStarted("r1", "greeting"),
        ev.ItemAdded(ev.ConversationItem("a1", "message", "assistant"), "^"),
        *[ev.AgentAudio("a1", "r1", CHUNK) for _ in range(chunks)],
        *[ev.AgentTranscriptDelta("a1", part) for part in transcript],
    )
    await wait_until(lambda: len(caller.audio) == chunks)
    for _, mark in caller.audio[:heard]:  # the phone played these
        controller.caller_mark(mark)


async def test_barge_in_stops_the_agent_where_the_caller_stopped_hearing_it(
    make_call: Callable[..., Awaitable[Call]], history: CallHistory
) -> None:
    controller, engine, caller = await make_call()
    # the mark clock stopped: what was heard is exactly what was acknowledged, however long a
    # loaded machine takes between the echo and the barge-in (it moves the position on)
    controller.playback._clock = Clock()
    await playing(controller, engine, caller, "Hello there, ", "how can I help?")  # two chunks heard
    engine.push(ev.CallerSpeechStarted(), ev.AgentAudio("a1", "r1", CHUNK))  # late audio of r1
    [(item_id, heard_ms)] = await engine.until_sent("stop_speaking")
    assert (item_id, heard_ms) == ("a1", 200)  # two acknowledged chunks, not the five sent
    assert caller.clears == 1 and len(caller.audio) == 5  # cleared; nothing more of r1 played
    await controller.recorder.flush(2.0)
    [item] = await history.get_items(controller.call_id)
    assert item.status == "interrupted" and item.audio_end_ms == 200
    assert item.text == "Hello there, how can I help?"[: len(item.text or "")] and item.full_text


async def test_a_barge_in_the_engine_sees_coming_is_cleared_at_once_and_truncated_where_it_was_heard(
    make_call: Callable[..., Awaitable[Call]], history: CallHistory
) -> None:
    """Engine.watch_barge_in: the clear goes out from the engine's callback, before the event is
    handled; the handler sends no second one and truncates at the position of that moment."""
    controller, engine, caller = await make_call()
    caller.writable_now = True
    assert engine.barge_in_now is not None  # the controller asked to be told
    engine.barge_in_now()  # nothing is playing yet: nothing to clear
    assert caller.clears == 0
    await playing(controller, engine, caller, "Hello there, how can I help?")  # two chunks heard
    engine.barge_in_now()
    assert caller.clears == 1  # sent from the callback itself, no await in between
    for _, mark in caller.audio[2:]:  # the clear's echoes of the marks it dropped move nothing
        controller.caller_mark(mark)
    with capture_logs() as logs:
        engine.push(ev.CallerSpeechStarted(), ev.AgentAudio("a1", "r1", CHUNK))  # late audio of r1
        [(item_id, heard_ms)] = await engine.until_sent("stop_speaking")
    assert (item_id, heard_ms) == ("a1", 200)
    assert [e["clear_sent_by"] for e in logs if e["event"] == "call.barge_in"] == ["read"]
    assert caller.clears == 1 and len(caller.audio) == 5  # one clear; nothing more of r1 played
    await controller.recorder.flush(2.0)
    [item] = await history.get_items(controller.call_id)
    assert item.status == "interrupted" and item.audio_end_ms == 200


async def test_a_barge_in_the_transport_cannot_clear_at_once_is_cleared_by_its_handler(
    make_call: Callable[..., Awaitable[Call]],
) -> None:
    controller, engine, caller = await make_call()
    await playing(controller, engine, caller, chunks=3, heard=0)
    assert engine.barge_in_now is not None
    engine.barge_in_now()  # writable_now False: nothing sent, nothing frozen
    assert caller.clears == 0 and controller.playback.is_playing()
    with capture_logs() as logs:
        engine.push(ev.CallerSpeechStarted())
        await engine.until_sent("stop_speaking")
    assert caller.clears == 1
    assert [e["clear_sent_by"] for e in logs if e["event"] == "call.barge_in"] == ["handler"]


async def test_agent_audio_taken_as_it_is_read_is_relayed_and_accounted_once(
    make_call: Callable[..., Awaitable[Call]],
) -> None:
    """Engine.take_audio: a chunk offered before it is an event goes out at once, with its mark,
    when the transport can write it; when it cannot, nothing is done or counted (the event then
    relays it); a chunk of a reply the caller spoke over is dropped; after the end, nothing."""
    controller, engine, caller = await make_call()
    await playing(controller, engine, caller, chunks=2, heard=0)  # two chunks through the events
    assert engine.audio_now is not None  # the controller asked to be offered audio
    assert engine.audio_now("a1", "r1", CHUNK) is False  # the transport cannot write at once
    assert len(caller.audio) == 2 and controller.playback.sent_ms("a1") == 200
    caller.writable_now = True
    assert engine.audio_now("a1", "r1", CHUNK) is True
    assert len(caller.audio) == 3 and controller.playback.sent_ms("a1") == 300
    for _, mark in caller.audio:  # its mark is one the playback knows, like the others
        assert mark is not None
        controller.caller_mark(mark)
    assert controller.playback.heard_ms("a1") == 300 and not controller.playback.is_playing()
    engine.audio_now("a1", "r1", CHUNK)
    engine.push(ev.CallerSpeechStarted())
    await engine.until_sent("stop_speaking")
    assert engine.audio_now("a1", "r1", CHUNK) is True  # the interrupted reply's late audio
    assert len(caller.audio) == 4  # dropped, not played
    await controller.close()
    assert engine.audio_now("a2", "r2", CHUNK) is False and len(caller.audio) == 4


async def test_an_answer_after_the_call_ended_is_dropped_and_logged(
    make_call: Callable[..., Awaitable[Call]], history: CallHistory
) -> None:
    supervisor = Supervisor(delay_s=0.3)
    controller, engine, _ = await make_call(supervisor)
    with capture_logs() as logs:
        engine.push(ev.SessionReady(), ev.HandoverRequested("call_9", SUPERVISOR_TOOL, ASK))
        await wait_until(lambda: supervisor.asked)
        await controller.close()  # the caller hung up while the supervisor worked
        await finish_kept_tasks(2.0)
    assert engine.sent("answer") == []
    [dropped] = [e for e in logs if e["event"] == "call.late_result_dropped"]
    assert dropped["tool_call_id"] == "call_9" and dropped["reason"] == "call ended"
    assert supervisor.asked  # the supervisor ran to its end (it records its own decision)


async def test_a_slow_supervisor_gets_one_hold_line_out_of_band(
    make_call: Callable[..., Awaitable[Call]],
) -> None:
    _, engine, _ = await make_call(Supervisor(delay_s=0.5), hold_delay_s=0.1)
    engine.push(ev.SessionReady(), ev.HandoverRequested("call_2", SUPERVISOR_TOOL, ASK))
    [(_, purpose, line)] = await engine.until_sent("reply")
    assert purpose == "hold_line" and line is not None and line.out_of_band and line.text == HOLD_LINE_TEXT
    engine.push(ev.ReplyStarted("r_hold", "hold_line"), ev.ReplyEnded("r_hold", "completed"))
    assert await engine.until_sent("answer") == [("call_2", "Tents can be returned within 60 days.")]


async def test_an_unknown_tool_is_answered_with_an_error(make_call: Callable[..., Awaitable[Call]]) -> None:
    _, engine, _ = await make_call()
    engine.push(ev.SessionReady(), ev.HandoverRequested("call_3", "lookupWeather", "{}"))
    [(handover_id, text)] = await engine.until_sent("answer")
    assert handover_id == "call_3" and "unknown tool" in text


async def test_resume_restores_the_history_and_delivers_the_parked_answer(
    make_call: Callable[..., Awaitable[Call]],
) -> None:
    controller, engine, _ = await make_call(greeting=True)
    engine.push(ev.SessionReady(), user_turn("u1"), ev.CallerTranscript("u1", "Do you sell stoves?"))
    await engine.until_sent("reply")  # the greeting
    await wait_until(lambda: controller.recorder.transcript_ready("u1").is_set())
    parked = ParkedEngine(controller.call_id, audio_limit_chars=1000)
    controller.park(parked)
    await parked.answer_handover("call_4", "Yes, we sell camping stoves.")  # answered while parked
    await controller.caller_audio("CCCC")
    fresh = ScriptedEngine()
    restored = await controller.resume(fresh)
    assert restored == 1
    assert [c.name for c in fresh.commands][:2] == ["start", "restore"]
    assert fresh.sent("restore") == [(("u1",),)]
    assert fresh.sent("answer") == [("call_4", "Yes, we sell camping stoves.")]
    assert "greeting" not in [purpose for _, purpose, _ in fresh.sent("reply")]
    assert fresh.audio == ["CCCC"]  # the caller's words from the gap, after the history
    assert controller.engine is fresh


@dataclass
class SlowEngine(ScriptedEngine):
    """A new session whose sends suspend (a busy socket), audio included."""

    async def answer_handover(self, handover_id: str, text: str) -> None:
        await asyncio.sleep(0.02)
        await super().answer_handover(handover_id, text)

    def append_audio_now(self, b64_audio: str) -> bool:
        return False

    async def append_audio(self, b64_audio: str) -> None:
        await asyncio.sleep(0.005)
        self.audio.append(b64_audio)


async def test_live_audio_during_a_resume_reaches_the_new_session_after_the_parked_audio(
    make_call: Callable[..., Awaitable[Call]],
) -> None:
    """Review finding: the engine was swapped before the parked audio was replayed, so frames
    the caller sent while the resume awaited its sends overtook older parked frames."""
    controller, engine, _ = await make_call()
    engine.push(ev.SessionReady())
    await wait_until(lambda: controller.caller_audio_now("AAAA") and engine.audio == ["AAAA"])
    parked = ParkedEngine(controller.call_id, audio_limit_chars=1000)
    controller.park(parked)
    await parked.answer_handover("call_5", "Sixty days.")
    for chunk in ("P001", "P002", "P003"):
        await controller.caller_audio(chunk)
    fresh = SlowEngine()
    live = [f"L{n:03d}" for n in range(1, 9)]

    async def caller_keeps_talking() -> None:
        for chunk in live:
            await controller.caller_audio(chunk)
            await asyncio.sleep(0.004)

    talking = asyncio.create_task(caller_keeps_talking())
    await controller.resume(fresh)
    await talking
    assert fresh.audio == ["P001", "P002", "P003", *live]  # in the caller's order, none lost
    assert fresh.sent("answer") == [("call_5", "Sixty days.")]
    assert controller.caller_audio_now("AFTR") is False  # the new session's own path now


async def test_a_replay_into_a_session_slower_than_the_caller_ends_and_keeps_the_order() -> None:
    """Review finding: with live audio queued behind the replay, a session that took audio more
    slowly than the caller sent it kept the resume replaying (and the audio growing) for good."""
    parked = ParkedEngine("CAreplay", audio_limit_chars=40)  # ten 4-char chunks
    for n in range(5):
        parked.append_audio_now(f"P{n:03d}")
    fresh = SlowEngine()  # 5 ms a chunk
    talking = True

    async def caller() -> None:
        n = 0
        while talking:
            parked.append_audio_now(f"L{n:03d}")
            n += 1
            await asyncio.sleep(0.002)

    task = asyncio.create_task(caller())
    await asyncio.wait_for(parked.replay_audio(fresh, within_s=0.2), 2.0)
    talking = False
    await task
    order = [(c[0] == "L", int(c[1:])) for c in fresh.audio]  # (live, number): arrival order
    assert order[:3] == [(False, 0), (False, 1), (False, 2)]  # the parked words first
    assert order == sorted(set(order))  # in the caller's order, none twice (some skipped: the limit)
    assert parked.audio_dropped_chars > 0  # given up after within_s, the rest counted as dropped


async def test_the_end_is_recorded_when_the_task_that_ended_the_call_is_cancelled(
    make_call: Callable[..., Awaitable[Call]], history: CallHistory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CI failure: a caller's ``stop`` closed the call from its socket's handler; the session
    came up meanwhile, so the session task closed the socket, the client went away and the
    server cancelled the handler while it waited for the call's last writes. The call stayed
    ``active`` for good (the session task's own close returned at once: already closed)."""
    controller, _, _ = await make_call()
    lane_closed = asyncio.Event()
    slow_writes = controller.recorder.lane.aclose

    async def aclose(timeout_s: float) -> None:
        lane_closed.set()
        await asyncio.sleep(0.2)  # the call's last writes take a moment
        await slow_writes(timeout_s)

    monkeypatch.setattr(controller.recorder.lane, "aclose", aclose)
    handler = asyncio.create_task(controller.close("caller_stopped"))
    await lane_closed.wait()
    handler.cancel()  # the socket handler, cancelled with its connection
    await controller.close("caller_gone")  # the second close waits for the end, and does not change it
    meta = await history.get_meta(controller.call_id)
    assert meta["status"] == "ended" and meta["end_reason"] == "caller_stopped"
    assert handler.cancelled()


async def test_a_sideband_call_cancelled_at_shutdown_is_recorded_as_a_shutdown(
    make_call: Callable[..., Awaitable[Call]], history: CallHistory
) -> None:
    """Review of the fix above: the reason of a call closed without one is read from the task
    that closes it (a SIP/WebRTC call's task is cancelled at shutdown), not from the ending's task."""
    controller, _, _ = await make_call(sideband=True)

    async def call_task() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            await controller.close()  # as run_sessions does on the way out

    task = asyncio.create_task(call_task())
    await asyncio.sleep(0)
    task.cancel()  # the app's cleanup cancels the call's task
    with contextlib.suppress(asyncio.CancelledError):
        await task
    meta = await history.get_meta(controller.call_id)
    assert meta["status"] == "ended" and meta["end_reason"] == "service_shutdown"
