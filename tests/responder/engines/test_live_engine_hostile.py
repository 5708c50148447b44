"""The GPT-Live engine and the call controller on it against a hostile or buggy Live server:
events out of order, repeated, late, oversized or flooding, over an in-memory socket (real
Redis history, a gated supervisor double). Each test is one finding of the adversarial
review of the engine seam and the Live engine; they run in well under a second each.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs
from websockets.exceptions import ConnectionClosed

from callrecord.decisions import Decision, Trigger
from callrecord.history import CallHistory, HistoryItem
from responder.core.contract import finish_kept_tasks
from responder.core.controller import CallController, ControllerConfig
from responder.core.parked import ParkedEngine
from responder.engines.live import protocol
from responder.engines.live.audio import caller_voiced, is_silent
from responder.engines.live.engine import TURN_GAP_MS, LiveEngine, SessionRefused
from tests.support.caller import RecordingCaller
from tests.support.sockets import ScriptedSocket
from tests.support.waits import wait_until

LOG = structlog.get_logger("test")
SESSION = {"model": "gpt-live-1.1", "audio": {"format": {"type": "audio/pcmu", "rate": 8000}}}
FRAME = base64.b64encode(b"\xff" * 160).decode()  # 20 ms of μ-law silence from the caller
LOUD_FRAME = base64.b64encode(bytes([0x10, 0x90] * 80)).decode()  # 20 ms of a loud caller
STARTED = {"type": "session.started", "session": {"id": "live_1"}}
COMMENTARY = "session.commentary.append"


def delegation(delegation_id: str, offset_ms: float) -> dict[str, Any]:
    return {"type": "session.delegation.created", "offset_ms": offset_ms,
            "delegation": {"id": delegation_id, "target": "client", "type": "delegation"}}  # fmt: skip


def fragment(delta: str, start_ms: float, end_ms: float) -> dict[str, Any]:
    return {"type": "session.input_transcript.delta", "delta": delta, "start_ms": start_ms, "end_ms": end_ms}


@dataclass
class GatedSupervisor:
    """A supervisor double that answers when the test lets it (``release``)."""

    history: CallHistory
    calls: list[tuple[str, str | None, Trigger]] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(
        self, call_id: str, context: str, *, user_item_id: str | None = None, trigger: Trigger = "tool_call",
        **_: object,
    ) -> Decision:  # fmt: skip
        self.calls.append((context, user_item_id, trigger))
        number = len(self.calls)
        await self.gate.wait()
        text = f"Answer {number}."
        decision = Decision(call_id=call_id, user_item_id=user_item_id, context=context, text=text)
        await self.history.add_decision(call_id, decision)  # as the supervisor records it
        return decision

    def release(self) -> None:
        self.gate.set()


@dataclass
class LiveCall:
    controller: CallController
    engine: LiveEngine
    socket: ScriptedSocket
    supervisor: GatedSupervisor
    pump: asyncio.Task[None]

    async def audio(self, frames: int, frame: str = FRAME) -> None:
        for _ in range(frames):
            await self.controller.caller_audio(frame)
        await asyncio.sleep(0.01)

    async def says(self, *words: str) -> tuple[float, float]:
        """The caller's words as fragments on the timeline where its audio is; (start, end)."""
        first = self.engine.timeline_ms
        for word in words:
            start = self.engine.timeline_ms
            await self.audio(10)
            self.socket.push(fragment(word, start, self.engine.timeline_ms))
        await asyncio.sleep(0.01)
        return first, self.engine.timeline_ms

    async def end_turn(self) -> None:
        await self.audio(int(TURN_GAP_MS / 20) + 1)

    def commentary(self) -> list[dict[str, Any]]:
        return self.socket.sent_of(COMMENTARY)

    async def hang_up(self) -> None:
        self.supervisor.release()
        self.socket.end()
        await asyncio.wait_for(self.pump, 5)
        await self.controller.close()
        await finish_kept_tasks(2.0)


async def live_call(
    history: CallHistory, call_id: str, *, recovery_s: float = 5.0, hold_delay_s: float = 30.0,
    greeting: bool = False,
) -> LiveCall:  # fmt: skip
    socket = ScriptedSocket(stay_open=True)
    engine = LiveEngine(socket, SESSION, LOG, bytes_per_ms=8.0, recovery_s=recovery_s)
    supervisor = GatedSupervisor(history)
    await history.start_call(call_id, transport="test", engine="live")
    config = ControllerConfig(transcript_wait_s=0.5, hold_delay_s=hold_delay_s, greeting=greeting)
    controller = CallController(call_id, engine, RecordingCaller(), history, supervisor, config)
    pump = asyncio.ensure_future(controller.pump())
    await controller.start()
    socket.push(STARTED)
    await wait_until(lambda: controller._session_ready)
    return LiveCall(controller, engine, socket, supervisor, pump)


# -- a recovered turn is answered once ---------------------------------------------------------
async def test_a_delegation_for_a_turn_being_recovered_does_not_run_the_supervisor_again(
    history: CallHistory,
) -> None:
    """README: "a late delegation for it gets the same answer, not a second run". The model
    delegates the turn while its recovered run is still with the supervisor."""
    call = await live_call(history, "CAhostile_rec", recovery_s=0.1)
    await call.says("What is your ", "return window?")
    await call.end_turn()
    await wait_until(lambda: call.supervisor.calls, what="the recovered run")
    call.socket.push(delegation("dlg_late", call.engine.timeline_ms))
    await asyncio.sleep(0.2)
    call.supervisor.release()
    await wait_until(lambda: len(call.commentary()) >= 2, what="the answer for both")
    await asyncio.sleep(0.1)
    assert [trigger for _, _, trigger in call.supervisor.calls] == ["recovered"]
    answers = {(c["delegation_id"], c["content"]) for c in call.commentary()}
    assert answers == {(None, "Answer 1."), ("dlg_late", "Answer 1.")}
    await call.hang_up()


async def test_a_delegation_id_delivered_twice_is_answered_once(history: CallHistory) -> None:
    call = await live_call(history, "CAhostile_dup")
    await call.says("Can I return ", "a used tent?")
    offset = call.engine.timeline_ms
    call.socket.push(delegation("dlg_1", offset), delegation("dlg_1", offset))
    await asyncio.sleep(0.1)
    call.supervisor.release()
    await wait_until(lambda: call.commentary(), what="the answer")
    await asyncio.sleep(0.1)
    assert len(call.supervisor.calls) == 1
    assert [c["delegation_id"] for c in call.commentary()] == ["dlg_1"]
    await call.hang_up()


# -- a delegation belongs to the turn at its offset ---------------------------------------------
async def test_a_delegation_for_the_previous_turn_does_not_cut_the_callers_new_turn(
    history: CallHistory,
) -> None:
    """The turn closed on the timeline; the caller starts again; then the delegation for the
    first turn arrives (~0.9 s after its audio, measured): its ``offset_ms`` is in the first."""
    call = await live_call(history, "CAhostile_off")
    _, first_end = await call.says("Can I return ", "a used tent?")
    await call.end_turn()
    await call.says("And also ")  # the caller goes on: a new turn opens
    call.socket.push(delegation("dlg_1", first_end + 100))
    await wait_until(lambda: call.supervisor.calls, what="the hand-over")
    [(context, user_item, _)] = call.supervisor.calls
    assert context == "Can I return a used tent?"
    items = [i for i in await history.get_items("CAhostile_off") if i.role == "user"]
    assert user_item == items[0].id
    await call.says("my sleeping bag?")
    await call.end_turn()
    await call.controller.recorder.flush(2.0)
    said = [i.text for i in await history.get_items("CAhostile_off") if i.role == "user"]
    assert said == ["Can I return a used tent?", "And also my sleeping bag?"]
    await call.hang_up()


async def test_a_late_fragment_of_a_delegated_turn_is_not_a_new_turn(history: CallHistory) -> None:
    """The tail of a turn can arrive after its delegation (its ``start_ms`` is before the
    offset): it is not the caller speaking again (no barge-in), and not a turn to recover."""
    call = await live_call(history, "CAhostile_tail", recovery_s=0.2)
    _, end = await call.says("Can I return ", "a used ")
    call.socket.push(delegation("dlg_1", end + 200))
    call.socket.push(fragment("tent?", end, end + 150))
    await call.end_turn()
    await asyncio.sleep(0.4)  # past recovery_s
    call.supervisor.release()
    await wait_until(lambda: call.commentary(), what="the answer")
    assert [trigger for _, _, trigger in call.supervisor.calls] == ["delegation"]
    await call.controller.recorder.flush(2.0)
    said = [i.text for i in await history.get_items("CAhostile_tail") if i.role == "user"]
    assert said == ["Can I return a used tent?"]
    await call.hang_up()


# -- the caller's noise is not a turn that never ends ------------------------------------------
async def test_a_noise_burst_without_words_does_not_silence_the_hold_line(history: CallHistory) -> None:
    """An energy onset (a cough, a door) marks the caller as speaking; with no words it must
    not keep them "speaking" for ever, or the slow supervisor's hold line never comes."""
    call = await live_call(history, "CAhostile_noise", hold_delay_s=0.2)
    await call.says("Can I return ", "a used tent?")
    call.socket.push(delegation("dlg_1", call.engine.timeline_ms))
    await wait_until(lambda: call.supervisor.calls, what="the hand-over")
    await call.audio(5, LOUD_FRAME)  # 100 ms of noise, then the line is quiet

    async def quiet_line() -> list[dict[str, Any]]:
        await call.audio(5)  # the caller's audio goes on (silence), as on a phone line
        return [c for c in call.socket.sent_of("session.thinking.append") if "still checking" in c["content"]]

    [hold] = await wait_until(quiet_line, 4.0, what="the hold line")  # a progress note for its delegation
    assert hold["delegation_id"] == "dlg_1"
    await call.hang_up()


# -- a new session after a drop -----------------------------------------------------------------
async def test_an_answer_for_the_dropped_sessions_delegation_is_general_commentary_on_the_new_one(
    history: CallHistory,
) -> None:
    """A delegation id is valid only on the connection that created it (docs/protocol-live.md
    §3; the simulator refuses an unknown id): the supervisor's answer to a delegation of the
    dead session, finished while parked, goes to the new session without that id."""
    call = await live_call(history, "CAhostile_park")
    await call.says("Can I return ", "a used tent?")
    call.socket.push(delegation("dlg_old", call.engine.timeline_ms))
    await wait_until(lambda: call.supervisor.calls, what="the hand-over")
    call.socket.end()  # the socket drops
    await asyncio.wait_for(call.pump, 5)
    parked = ParkedEngine("CAhostile_park", 1000, "live")
    call.controller.park(parked)
    call.supervisor.release()
    await wait_until(lambda: parked.answers, what="the answer, while parked")
    socket = ScriptedSocket(stay_open=True)
    engine = LiveEngine(socket, SESSION, LOG, bytes_per_ms=8.0)
    resuming = asyncio.ensure_future(call.controller.resume(engine))
    pump = asyncio.ensure_future(_pump_after(resuming, call.controller))
    await asyncio.sleep(0.05)
    before_started = [e["type"] for e in socket.sent]
    socket.push(STARTED)
    await wait_until(lambda: socket.sent_of(COMMENTARY), what="the answer on the new session")
    [answer] = socket.sent_of(COMMENTARY)
    assert answer["content"] == "Answer 1." and answer["delegation_id"] is None
    assert before_started == ["session.start"]  # nothing before session.started (§1)
    socket.end()
    await asyncio.wait_for(pump, 5)
    await call.controller.close()
    await finish_kept_tasks(2.0)


class DroppingSocket(ScriptedSocket):
    """A socket that has dropped: what is sent from now on fails, as the SDK's does."""

    dropped = False

    async def send(self, event: Mapping[str, object]) -> str:
        if self.dropped:
            raise ConnectionClosed(None, None)
        return await super().send(event)


async def test_an_answer_sent_into_the_dying_socket_is_given_on_the_new_session(
    history: CallHistory,
) -> None:
    """Realtime requeues an answer whose output never came back (resume.unrecorded_answers,
    from the Decision record); on Live the send fails with the socket and the answer was lost."""
    socket = DroppingSocket(stay_open=True)
    engine = LiveEngine(socket, SESSION, LOG, bytes_per_ms=8.0)
    supervisor = GatedSupervisor(history)
    await history.start_call("CAhostile_dying", transport="test", engine="live")
    config = ControllerConfig(transcript_wait_s=0.5, hold_delay_s=30.0, greeting=False)
    controller = CallController("CAhostile_dying", engine, RecordingCaller(), history, supervisor, config)
    pump = asyncio.ensure_future(controller.pump())
    await controller.start()
    socket.push(STARTED)
    await wait_until(lambda: controller._session_ready)
    call = LiveCall(controller, engine, socket, supervisor, pump)
    await call.says("Can I return ", "a used tent?")
    socket.push(delegation("dlg_1", engine.timeline_ms))
    await wait_until(lambda: supervisor.calls, what="the hand-over")
    socket.dropped = True
    supervisor.release()  # the answer goes into the dead socket (and fails there)
    await asyncio.sleep(0.1)
    socket.end()
    await asyncio.wait_for(pump, 5)
    controller.park(ParkedEngine("CAhostile_dying", 1000, "live"))
    fresh = ScriptedSocket([STARTED], stay_open=True)
    resuming = asyncio.ensure_future(controller.resume(LiveEngine(fresh, SESSION, LOG, bytes_per_ms=8.0)))
    pump = asyncio.ensure_future(_pump_after(resuming, controller))
    [answer] = await wait_until(lambda: fresh.sent_of(COMMENTARY), what="the answer on the new session")
    assert answer["content"] == "Answer 1." and answer["delegation_id"] is None
    fresh.end()
    await asyncio.wait_for(pump, 5)
    await controller.close()
    await finish_kept_tasks(2.0)


async def _pump_after(resuming: asyncio.Future[int], controller: CallController) -> None:
    await resuming
    await controller.pump()


async def test_restored_context_keeps_the_newest_turns(history: CallHistory) -> None:
    """After a drop the new session gets the conversation as thinking (≤ 500 tokens): when it
    does not all fit, what is kept must be the end of it (what the caller just said)."""
    socket = ScriptedSocket(stay_open=True)
    engine = LiveEngine(socket, SESSION, LOG, bytes_per_ms=8.0)
    items = [
        HistoryItem(id=f"i{n}", kind="message", role="user" if n % 2 else "assistant",
                    text=f"Turn {n}. " + "We talked about tents and sleeping bags at length. " * 3)
        for n in range(20)
    ]  # fmt: skip
    items.append(HistoryItem(id="last", kind="message", role="user", text="Where is my order 4471?"))
    reading = asyncio.ensure_future(_drain(engine))
    socket.push(STARTED)
    await engine.restore(items)
    await wait_until(lambda: socket.sent_of("session.thinking.append"), what="the restored context")
    [thinking] = socket.sent_of("session.thinking.append")
    assert protocol.estimated_tokens(thinking["content"]) <= protocol.MAX_APPEND_TOKENS
    assert thinking["content"].endswith("Caller: Where is my order 4471?")
    reading.cancel()


# -- a session that never starts ----------------------------------------------------------------
async def test_a_refused_session_start_ends_the_session_instead_of_dead_air() -> None:
    """An ``error`` before ``session.started`` means the session did not start (model not
    found, credit exhausted …): the socket may stay open, and the call must not wait on it for
    ever in silence (the controller only streams audio once the session is ready)."""
    socket = ScriptedSocket(stay_open=True)
    engine = LiveEngine(socket, SESSION, LOG, bytes_per_ms=8.0)
    await engine.start()
    error = {"type": "invalid_request_error", "code": "model_not_found", "message": "No such model.",
             "client_event_id": socket.sent[0]["event_id"]}  # fmt: skip
    socket.push({"type": "error", "error": error})
    events: list[Any] = []
    with pytest.raises(SessionRefused):
        async with asyncio.timeout(2):
            async for event in engine.events():
                events.append(event)
    assert [type(e).__name__ for e in events] == ["EngineError"]


# -- commentary within the server's 500 tokens --------------------------------------------------
CHINESE_ANSWER = (
    "您好，根据我们的退货政策，露营帐篷在购买后六十天内可以退货。"
    "如果帐篷已经使用过，我们仍然可以在三十天内为您办理换货。"
    "请您准备好订单号和购买时使用的付款方式，我们会尽快为您处理。"
)


def test_commentary_in_chinese_fits_the_servers_500_tokens() -> None:
    """OpenAI's tokenizers spend 0.7-1.5 tokens on a Chinese character: 500 tokens hold at
    most ~500-700 of them, yet the 3-characters-a-token estimate lets 1,500 through (the
    server refuses the append: the caller never hears the answer). Cut at a 。 boundary."""
    fitted = protocol.fit_tokens(CHINESE_ANSWER * 20)
    assert len(fitted) <= 500
    assert fitted.endswith("。") and (CHINESE_ANSWER * 20).startswith(fitted)


# -- the audio hot path -------------------------------------------------------------------------
def test_pcm_voice_detection_agrees_with_the_peak_rule() -> None:
    """A cheaper PCM classification must give what the 16-bit peak rule gives (peaks away
    from the thresholds: 500 for silence, 2000 for the caller's voice)."""
    import numpy as np

    rng = np.random.default_rng(7)
    for peak in (0, 100, 400, 600, 1500, 2500, 9000, 32767):
        samples = np.zeros(480, dtype="<i2")
        samples[rng.integers(0, 480, 5)] = rng.choice([-1, 1], 5) * peak
        b64 = base64.b64encode(samples.tobytes()).decode()
        assert is_silent(b64, "audio/pcm") == (peak < 500), peak
        assert caller_voiced(b64, "audio/pcm") == (peak >= 2000), peak


# -- floods ---------------------------------------------------------------------------------------
async def test_a_flood_of_fragments_keeps_a_bounded_turn() -> None:
    socket = ScriptedSocket(stay_open=True)
    engine = LiveEngine(socket, SESSION, LOG, bytes_per_ms=8.0)
    reading = asyncio.ensure_future(_drain(engine))
    socket.push(STARTED)
    with capture_logs() as logs:
        for n in range(20_000):
            socket.push(fragment("blah " * 20, n, n + 1))
        await wait_until(lambda: socket._queue.empty(), what="the flood read")
        await asyncio.sleep(0.01)
    turn = engine._caller
    assert turn is not None and len(turn.text) <= 20_000
    assert sum(e["event"] == "gpt_live.transcript_capped" for e in logs) == 1
    reading.cancel()


async def test_a_slow_call_loop_holds_the_socket_back_instead_of_queueing_without_bound() -> None:
    """Realtime pulls server events as the controller handles them (a slow caller link holds
    the socket back); the Live engine reads them in a task of its own into a queue: it must
    not read on without bound while the controller is behind (a flood, or a slow phone line)."""
    voiced = base64.b64encode(bytes([0x20, 0xA0] * 400)).decode()
    socket = ScriptedSocket([{"type": "session.output_audio.delta", "delta": voiced}] * 5000, stay_open=True)
    engine = LiveEngine(socket, SESSION, LOG, bytes_per_ms=8.0)
    largest = 0
    stream = engine.events()
    async with asyncio.timeout(10):
        async for _ in stream:
            largest = max(largest, engine._queue.qsize())
            await asyncio.sleep(0)  # the controller relays the chunk: the loop turns
            if socket._queue.empty():
                break
    await stream.aclose()
    assert largest <= 300, largest


async def _drain(engine: LiveEngine) -> None:
    stream: AsyncIterator[Any] = engine.events()
    async for _ in stream:
        pass
