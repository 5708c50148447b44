"""The GPT-Live engine's translation of the primary WebSocket, over an in-memory socket, and
the call controller on it (real Redis history, a supervisor double).

Live sends no items, responses or barge-in events: caller turns come from transcript
fragments on the session timeline (which advances with the caller audio the engine appends),
agent turns from where the continuous output track is voiced.
"""

from __future__ import annotations

import asyncio
import base64

import structlog

from callrecord.decisions import Decision
from callrecord.history import CallHistory
from responder.core import engine as ev
from responder.core.contract import finish_kept_tasks
from responder.core.controller import CallController, ControllerConfig
from responder.engines.live.engine import TURN_GAP_MS, LiveEngine
from responder.engines.live.protocol import MAX_APPEND_TOKENS, estimated_tokens, fit_tokens
from tests.support.caller import RecordingCaller
from tests.support.sockets import ScriptedSocket
from tests.support.waits import wait_until

LOG = structlog.get_logger("test")
SESSION = {"model": "gpt-live-1.1", "audio": {"format": {"type": "audio/pcmu", "rate": 8000}}}
VOICED = base64.b64encode(bytes([0x20, 0xA0] * 400)).decode()  # 100 ms of loud μ-law
SILENT = base64.b64encode(b"\xff" * 800).decode()  # 100 ms of μ-law silence
FRAME = base64.b64encode(b"\xff" * 160).decode()  # 20 ms of caller audio


def engine_on(socket: ScriptedSocket, recovery_s: float = 5.0) -> LiveEngine:
    """An engine whose session has started (before that, what it sends is held)."""
    engine = LiveEngine(socket, SESSION, LOG, bytes_per_ms=8.0, recovery_s=recovery_s)
    engine._started = True
    return engine


async def collect(engine: LiveEngine, count: int) -> list[ev.EngineEvent]:
    events: list[ev.EngineEvent] = []
    stream = engine.events()
    async with asyncio.timeout(5):
        async for event in stream:
            events.append(event)
            if len(events) == count:
                break
    await stream.aclose()
    return events


async def caller_speaks(engine: LiveEngine, socket: ScriptedSocket, words: list[str]) -> None:
    """Fragments on the timeline where the caller audio is, then enough audio to end the turn."""
    for word in words:
        start = engine.timeline_ms
        for _ in range(10):
            await engine.append_audio(FRAME)
        socket.push({"type": "session.input_transcript.delta", "delta": word, "start_ms": start,
                     "end_ms": engine.timeline_ms})  # fmt: skip
    await asyncio.sleep(0.01)


async def test_a_delegated_turn_becomes_a_hand_over_after_the_callers_transcript() -> None:
    socket = ScriptedSocket(stay_open=True)
    engine = engine_on(socket)
    socket.push({"type": "session.started", "session": {"id": "live_1"}})
    collected = asyncio.ensure_future(collect(engine, 7))
    await caller_speaks(engine, socket, ["Can I return ", "a used tent?"])
    socket.push({"type": "session.delegation.created", "offset_ms": engine.timeline_ms,
                 "delegation": {"id": "dlg_1", "target": "client", "type": "delegation"}})  # fmt: skip
    events = await collected
    user = events[1]
    assert isinstance(user, ev.ItemAdded) and user.item.role == "user"
    assert events[0] == ev.SessionReady() and events[2] == ev.CallerSpeechStarted()
    assert events[3] == ev.CallerTranscript(user.item.id, "Can I return a used tent?")
    assert events[4] == ev.CallerSpeechStopped()
    assert isinstance(events[5], ev.ItemAdded) and events[5].item.tool_call_id == "dlg_1"
    handover = ev.HandoverRequested("dlg_1", "getNextResponseFromSupervisor", "", "dlg_1", "delegation",
                                    user.item.id)  # fmt: skip
    assert events[6] == handover


async def test_the_timeline_ends_a_caller_turn_that_nobody_delegated() -> None:
    socket = ScriptedSocket(stay_open=True)
    engine = engine_on(socket)
    collected = asyncio.ensure_future(collect(engine, 4))
    await caller_speaks(engine, socket, ["Hi there."])
    for _ in range(int(TURN_GAP_MS / 20) + 1):  # the caller is silent: the timeline moves on
        await engine.append_audio(FRAME)
    events = await collected
    assert isinstance(events[2], ev.CallerTranscript) and events[2].text == "Hi there."
    assert len(socket.audio) == 10 + int(TURN_GAP_MS / 20) + 1  # every frame went on, silence too


async def test_voiced_output_is_relayed_and_silence_ends_the_utterance() -> None:
    socket = ScriptedSocket(stay_open=True)
    engine = engine_on(socket)
    socket.push(
        {"type": "session.output_audio.delta", "delta": SILENT},  # before speech: dropped
        {"type": "session.output_transcript.delta", "delta": "Hello!", "start_ms": 0, "end_ms": 400},
        {"type": "session.output_audio.delta", "delta": VOICED},
        {"type": "session.output_audio.delta", "delta": VOICED},
        *[{"type": "session.output_audio.delta", "delta": SILENT}] * 6,
    )
    events = await collect(engine, 7)
    added, started, delta, audio1, audio2, done, ended = events
    assert isinstance(added, ev.ItemAdded) and added.item.role == "assistant"
    item_id = added.item.id
    assert started == ev.ReplyStarted(item_id, None) and delta == ev.AgentTranscriptDelta(item_id, "Hello!")
    assert audio1 == audio2 == ev.AgentAudio(item_id, item_id, VOICED)  # passed through as it came
    assert done == ev.AgentTranscriptDone(item_id, "Hello!") and ended == ev.ReplyEnded(item_id, "completed")


async def test_a_turn_never_delegated_is_recovered_as_a_hand_over_of_its_own() -> None:
    socket = ScriptedSocket(stay_open=True)
    engine = engine_on(socket, recovery_s=0.2)
    collected = asyncio.ensure_future(collect(engine, 6))
    await caller_speaks(engine, socket, ["What is your return window?"])
    for _ in range(int(TURN_GAP_MS / 20) + 1):
        await engine.append_audio(FRAME)
    events = await collected
    handover = events[-1]
    assert isinstance(handover, ev.HandoverRequested) and handover.handover_id.startswith("recovered_")
    await engine.answer_handover(handover.handover_id, "Sixty days for most items.")
    [commentary] = socket.sent_of("session.commentary.append")
    assert commentary["delegation_id"] is None and commentary["content"] == "Sixty days for most items."
    # the model delegates that turn after all: answered with the same text, not asked again
    reading = asyncio.ensure_future(collect(engine, 100))
    socket.push({"type": "session.delegation.created", "offset_ms": 1,
                 "delegation": {"id": "dlg_late", "target": "client", "type": "delegation"}})  # fmt: skip
    await wait_until(lambda: len(socket.sent_of("session.commentary.append")) == 2)
    late = socket.sent_of("session.commentary.append")[1]
    assert late["delegation_id"] == "dlg_late" and late["content"] == "Sixty days for most items."
    reading.cancel()


def test_answers_fit_500_tokens_at_a_sentence_boundary() -> None:
    sentence = "Tents used on a trip can come back within sixty days under the Trail Tested promise. "
    text = sentence * 40
    fitted = fit_tokens(text)
    assert estimated_tokens(fitted) <= MAX_APPEND_TOKENS and fitted.endswith("promise.")
    assert text.startswith(fitted)  # whole sentences, in order
    assert fit_tokens("Short answer.") == "Short answer."
    run_on = "word, " * 2000
    assert estimated_tokens(fit_tokens(run_on)) <= MAX_APPEND_TOKENS


async def test_the_controller_answers_a_delegation_with_commentary(history: CallHistory) -> None:
    asked: list[str] = []

    async def decide(

        call_id: str, context: str, *, user_item_id: str | None = None, **_: object

    ) -> Decision:
        asked.append(context)
        return Decision(call_id=call_id, user_item_id=user_item_id, context=context, text="Within 60 days.")

    socket = ScriptedSocket(stay_open=True)
    engine = engine_on(socket)
    await history.start_call("CAlive1", transport="test", engine="live")
    config = ControllerConfig(transcript_wait_s=1.0, hold_delay_s=30.0, greeting=True)
    controller = CallController("CAlive1", engine, RecordingCaller(), history, decide, config)
    pump = asyncio.ensure_future(controller.pump())
    await controller.start()
    assert socket.sent[0]["type"] == "session.start"
    socket.push({"type": "session.started", "session": {"id": "live_1"}})
    await wait_until(lambda: socket.sent_of("session.commentary.append"))  # the greeting
    await caller_speaks(engine, socket, ["Can I return ", "a used tent?"])
    socket.push({"type": "session.delegation.created", "offset_ms": engine.timeline_ms,
                 "delegation": {"id": "dlg_7", "target": "client", "type": "delegation"}})  # fmt: skip
    await wait_until(lambda: len(socket.sent_of("session.commentary.append")) == 2)
    answer = socket.sent_of("session.commentary.append")[1]
    assert answer["delegation_id"] == "dlg_7" and answer["content"] == "Within 60 days."
    assert asked == ["Can I return a used tent?"]  # the caller's turn, rebuilt from the timeline
    await controller.recorder.flush(2.0)
    kinds = [(i.kind, i.role) for i in await history.get_items("CAlive1")]
    assert ("message", "user") in kinds and ("function_call", "assistant") in kinds
    assert ("function_call_output", "system") in kinds
    socket.end()
    await asyncio.wait_for(pump, 5)
    await controller.close()
    await finish_kept_tasks(2.0)

