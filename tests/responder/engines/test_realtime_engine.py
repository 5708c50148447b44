"""The Realtime engine: its wire translation, and the call controller on it against the
simulator's Realtime WS through the real openai SDK.

The caller side is a recording sink that acknowledges marks on demand (what a phone would
do once audio has played), so the heard position is under the test's control.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI
from structlog.testing import capture_logs

from callrecord.decisions import Decision
from callrecord.history import CallHistory
from infra.settings import Settings
from responder.core import engine as ev
from responder.core.controller import CallController, ControllerConfig
from responder.engines.realtime import protocol
from responder.engines.realtime.engine import RealtimeEngine, open_engine
from responder.engines.realtime.session import build_session
from simulator.app import create_simulator_app
from simulator.scenario import Scenario, Turn
from simulator.state import STATE_KEY, SimulatorState
from tests.support.caller import RecordingCaller
from tests.support.sockets import ScriptedSocket

LOG = structlog.get_logger("test")


@pytest.fixture
async def simulator() -> AsyncIterator[TestServer]:
    scenario = Scenario(
        name="unit", greeting="Hello there, this is Robin.", turns=[Turn(say="Hi", reply="Hey!")]
    )
    server = TestServer(create_simulator_app(scenario, speed=8.0))
    await server.start_server()
    yield server
    await server.close()


async def never_called(


    call_id: str, context: str, *, user_item_id: str | None = None, **_: object


) -> Decision:
    raise AssertionError("the supervisor must not be asked")


async def wait_for(predicate: object, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.02)


async def test_server_errors_are_logged_with_the_client_event_that_caused_them(
    simulator: TestServer, history: CallHistory
) -> None:
    client = AsyncOpenAI(api_key="test", base_url=str(simulator.make_url("/v1")))
    caller = RecordingCaller()
    with capture_logs() as logs:
        session = build_session(Settings())
        async with open_engine(client, "CAunit1", session, LOG, model="gpt-realtime") as engine:
            ctl = CallController(
                "CAunit1", engine, caller, history, never_called, ControllerConfig(greeting=False)
            )
            await ctl.start()
            runner = asyncio.create_task(ctl.run())
            bad_id = await engine.conn.send(protocol.item_truncate("nope", 5))
            await wait_for(lambda: any(e["event"] == "realtime.error" for e in logs))
            await ctl.close()
            await runner
        await client.close()
    [err] = [e for e in logs if e["event"] == "realtime.error"]
    assert err["client_event_id"] == bad_id
    assert err["client_event_type"] == "conversation.item.truncate"
    assert err["call_id"] == "CAunit1"
    assert (await history.get_meta("CAunit1"))["status"] == "ended"


async def test_greeting_audio_is_relayed_untouched_with_a_mark_per_chunk(
    simulator: TestServer, history: CallHistory
) -> None:
    client = AsyncOpenAI(api_key="test", base_url=str(simulator.make_url("/v1")))
    caller = RecordingCaller()
    async with open_engine(client, "CAunit2", build_session(Settings()), LOG, model="gpt-realtime") as engine:
        ctl = CallController("CAunit2", engine, caller, history, never_called, ControllerConfig())
        await ctl.start()
        runner = asyncio.create_task(ctl.run())
        await wait_for(lambda: len(caller.audio) > 0)
        # nothing acknowledged yet: the caller heard nothing
        item_id = ctl.playback.current_item
        assert item_id is not None and ctl.playback.heard_ms(item_id) == 0
        for _, mark in caller.audio[:3]:
            ctl.caller_mark(mark)
        assert ctl.playback.heard_ms(item_id) == 300  # three 100 ms pcmu chunks
        await wait_for(lambda: ctl.responses.active is None and len(caller.audio) >= 10)
        await ctl.close()
        await runner
    await client.close()
    state: SimulatorState = simulator.app[STATE_KEY]
    creates = [e for e in state.client_events if e["type"] == "response.create"]
    assert len(creates) == 1 and state.invalid_events == []
    marks = [m for _, m in caller.audio]
    assert len(set(marks)) == len(marks)  # every chunk has its own mark
    [item] = [i for i in await history.get_items("CAunit2") if i.role == "assistant"]
    assert item.text == "Hello there, this is Robin." and item.status == "completed"


async def _translate(raw: list[dict[str, Any]]) -> list[ev.EngineEvent]:
    engine = RealtimeEngine(ScriptedSocket(raw), {}, LOG)
    return [event async for event in engine.events()]


async def test_server_events_become_the_seams_typed_events() -> None:
    events = await _translate([
        {"type": "session.updated", "session": {}},
        {"type": "conversation.item.added", "previous_item_id": None,
         "item": {"id": "u1", "type": "message", "role": "user", "content": [{"type": "input_audio"}]}},
        {"type": "conversation.item.added", "previous_item_id": "u1",
         "item": {"id": "f1", "type": "function_call", "name": "getNextResponseFromSupervisor",
                  "call_id": "call_1", "arguments": ""}},
        {"type": "conversation.item.added", "item": {"id": "o1", "type": "function_call_output",
                                                     "call_id": "call_1", "output": "x"}},
        {"type": "conversation.item.input_audio_transcription.completed", "item_id": "u1",
         "transcript": "  Can I return a tent?  "},
        {"type": "response.created", "response": {"id": "r1", "metadata": {"purpose": "answer"}}},
        {"type": "response.output_audio.delta", "response_id": "r1", "item_id": "a1", "delta": "AAAA"},
        {"type": "response.output_audio.delta", "response_id": "r1", "item_id": "a1", "delta": ""},
        {"type": "response.output_audio_transcript.done", "item_id": "a1", "transcript": "Yes. "},
        {"type": "response.function_call_arguments.done", "call_id": "call_1", "item_id": "f1",
         "name": "getNextResponseFromSupervisor", "arguments": '{"x": 1}'},
        {"type": "response.done", "response": {"id": "r1", "status": "cancelled",
                                               "status_details": {"reason": "turn_detected"}}},
        {"type": "input_audio_buffer.dtmf_event_received", "event": "7"},
        {"type": "input_audio_buffer.dtmf_event_received", "event": "77"},
        {"type": "conversation.item.truncated", "item_id": "a1", "audio_end_ms": 640},
        {"type": "rate_limits.updated", "rate_limits": []},
        {"type": "response.audio.delta", "delta": "AAAA"},  # a beta name: not ours
        {"type": "response.output_audio.delta", "item_id": 5, "delta": "AAAA"},  # wrong shape
    ])  # fmt: skip
    assert events == [
        ev.SessionReady(),
        ev.ItemAdded(ev.ConversationItem("u1", "message", "user"), "^"),
        ev.ItemAdded(
            ev.ConversationItem("f1", "function_call", "assistant", name="getNextResponseFromSupervisor",
                                tool_call_id="call_1"), "u1",
        ),
        ev.ItemAdded(ev.ConversationItem("o1", "function_call_output", "system", tool_call_id="call_1",
                                         output="x"), ""),
        ev.CallerTranscript("u1", "Can I return a tent?"),
        ev.ReplyStarted("r1", "answer"),
        ev.AgentAudio("a1", "r1", "AAAA"),
        ev.AgentTranscriptDone("a1", "Yes."),
        ev.HandoverRequested("call_1", "getNextResponseFromSupervisor", '{"x": 1}', "f1"),
        ev.ReplyEnded("r1", "cancelled", "turn_detected"),
        ev.Dtmf("7"),
        ev.AgentTruncated("a1", 640),
    ]


async def test_errors_name_the_client_event_that_caused_them() -> None:
    socket = ScriptedSocket(stay_open=True)
    engine = RealtimeEngine(socket, {}, LOG)
    await engine.stop_speaking("a1", 300)
    truncate_id = socket.sent[-1]["event_id"]
    socket.push({"type": "error", "error": {"type": "invalid_request_error", "code": "x",
                                            "event_id": truncate_id}})  # fmt: skip
    socket.end()
    [error] = [e async for e in engine.events()]
    assert error == ev.EngineError(code="x", error_type="invalid_request_error",
                                   client_event_id=truncate_id,
                                   client_event_type="conversation.item.truncate")  # fmt: skip


async def test_commands_become_ga_client_events() -> None:
    socket = ScriptedSocket([])
    engine = RealtimeEngine(socket, {"type": "realtime"}, LOG)
    await engine.start()
    await engine.answer_handover("call_1", "Sixty days.")
    await engine.request_reply("evt_r", "answer")
    hold_line = ev.Line("Still checking.", out_of_band=True, guidance="Wait.")
    await engine.request_reply("evt_h", "hold_line", hold_line)
    await engine.cancel_reply("r9")
    await engine.append_audio("AAAA")
    assert [e["type"] for e in socket.sent] == [
        "session.update", "conversation.item.create", "response.create", "response.create", "response.cancel",
    ]  # fmt: skip
    output = {"type": "function_call_output", "call_id": "call_1", "output": "Sixty days."}
    assert socket.sent[1]["item"] == output
    assert socket.sent[2]["response"] == {"metadata": {"purpose": "answer"}}
    hold = socket.sent[3]["response"]
    assert hold["conversation"] == "none" and hold["tools"] == [] and hold["tool_choice"] == "none"
    assert hold["instructions"] == 'Say exactly: "Still checking." Nothing else. Wait.'
    assert socket.audio == ["AAAA"]  # the hot path: passed through as it came
    assert protocol.audio_append("AAAA") == '{"type":"input_audio_buffer.append","audio":"AAAA"}'


async def test_restored_items_are_not_reported_again() -> None:
    from callrecord.history import HistoryItem

    socket = ScriptedSocket([
        {"type": "conversation.item.added", "item": {"id": "u1", "type": "message", "role": "user",
                                                     "content": [{"type": "input_text", "text": "Hi"}]}},
        {"type": "conversation.item.added", "item": {"id": "u2", "type": "message", "role": "user",
                                                     "content": [{"type": "input_text", "text": "Yo"}]}},
    ])  # fmt: skip
    engine = RealtimeEngine(socket, {}, LOG)
    restored = await engine.restore([
        HistoryItem(id="u1", kind="message", role="user", text="Hi", status="completed"),
        HistoryItem(id="f1", kind="function_call", role="assistant", name="t", call_id="c1",
                    status="completed"),
    ])  # fmt: skip
    assert restored.item_ids == {"u1", "f1"} and restored.handovers == {"c1"} and not restored.answered
    assert not restored.awaits_reply  # the last replayed item is a tool call, not a caller turn
    assert [e.item.id async for e in engine.events()] == ["u2"]  # type: ignore[union-attr]
