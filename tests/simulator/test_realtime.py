"""The realtime WebSocket double, driven through the real ``openai`` SDK."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from simulator import audio
from simulator.realtime_response import MS_PER_CHAR, SUPERVISOR_TOOL, speech_ms
from simulator.realtime_routes import add_realtime_routes
from simulator.scenario import Scenario, Turn
from simulator.state import STATE_KEY, SimulatorState
from tests.support.simulator import Events

SPEED = 8.0
SERVER_EVENT = TypeAdapter(RealtimeServerEvent)

SCENARIO = Scenario(
    name="test",
    greeting="Thanks for calling Northwind Outfitters.",
    turns=[
        Turn(say="Hi, how are you today?", reply="I'm doing great, thanks for asking!"),
        Turn(say="Can I return a tent I already used on a camping trip?", filler="Let me check."),
        Turn(say="Okay, thanks.", reply="You're welcome."),
    ],
)

SUPERVISOR_TOOL_DEF = {
    "type": "function",
    "name": SUPERVISOR_TOOL,
    "description": "Ask the supervisor.",
    "parameters": {
        "type": "object",
        "properties": {"relevantContextFromLastUserMessage": {"type": "string"}},
        "required": ["relevantContextFromLastUserMessage"],
        "additionalProperties": False,
    },
}

PCMU_SESSION: dict[str, Any] = {
    "type": "realtime",
    "instructions": "You are Robin.",
    "output_modalities": ["audio"],
    "audio": {
        "input": {
            "format": {"type": "audio/pcmu"},
            "transcription": {"model": "gpt-4o-mini-transcribe", "language": "en"},
            "turn_detection": {"type": "semantic_vad", "create_response": True, "interrupt_response": True},
        },
        "output": {"format": {"type": "audio/pcmu"}, "voice": "marin"},
    },
    "tools": [SUPERVISOR_TOOL_DEF],
    "tool_choice": "auto",
}


class Client(Events):
    """An SDK realtime connection that keeps every server event it received."""

    async def send(self, event: dict[str, Any]) -> None:
        await self.conn.send(event)

    async def send_raw(self, text: str) -> None:
        await self.conn.send_raw(text)

    async def speak(self, ms: int, *, silence_ms: int = 700, fmt: audio.AudioFormat = "pcmu") -> None:
        """Append ``ms`` of speech then silence, in 20 ms chunks, as fast as possible."""
        data = audio.speech(ms, fmt) + audio.silence(silence_ms, fmt)
        step = 20 * audio.BYTES_PER_MS[fmt]
        for i in range(0, len(data), step):
            chunk = base64.b64encode(data[i : i + step]).decode()
            await self.conn.send_raw(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))

    async def configure(self, session: dict[str, Any] = PCMU_SESSION) -> dict[str, Any]:
        await self.send({"type": "session.update", "session": session})
        return await self.until("session.updated")


Connect = Callable[..., Awaitable[Client]]


@pytest.fixture
def sim_state() -> SimulatorState:
    return SimulatorState(scenario=SCENARIO, speed=SPEED)


@pytest.fixture
async def server(
    aiohttp_server: Callable[..., Awaitable[TestServer]], sim_state: SimulatorState
) -> TestServer:
    app = web.Application()
    app[STATE_KEY] = sim_state
    add_realtime_routes(app)
    return await aiohttp_server(app)


@pytest.fixture
async def connect(server: TestServer) -> AsyncIterator[Connect]:
    """Open SDK connections; afterwards every server event they got must match the SDK's types."""
    clients: list[Client] = []
    managers: list[Any] = []

    async def open_client(**kwargs: Any) -> Client:
        sdk = AsyncOpenAI(base_url=str(server.make_url("/v1")), api_key="test")
        manager = sdk.realtime.connect(**(kwargs or {"model": "gpt-realtime"}))
        client = Client(await manager.__aenter__())
        managers.append(manager)
        clients.append(client)
        created = await client.next()
        assert created["type"] == "session.created"
        return client

    yield open_client
    for manager in managers:
        await manager.__aexit__(None, None, None)
    for client in clients:
        for event in client.events:
            SERVER_EVENT.validate_python(event)


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def audio_bytes(events: list[dict[str, Any]], item_id: str | None = None) -> bytes:
    return b"".join(
        base64.b64decode(e["delta"])
        for e in events
        if e["type"] == "response.output_audio.delta" and item_id in (None, e["item_id"])
    )


async def test_requires_bearer_auth(server: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(server.make_url("/v1/realtime?model=gpt-realtime"))
    assert info.value.status == 401


async def test_session_update_merges(connect: Connect) -> None:
    client = await connect(model="gpt-realtime")
    updated = await client.configure()
    session = updated["session"]
    assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["output"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["output"]["voice"] == "marin"
    assert session["audio"]["input"]["turn_detection"]["type"] == "semantic_vad"
    assert [t["name"] for t in session["tools"]] == [SUPERVISOR_TOOL]
    assert session["model"] == "gpt-realtime"


async def test_invalid_events_get_error_events(connect: Connect, sim_state: SimulatorState) -> None:
    client = await connect()
    await client.send_raw(json.dumps({"type": "conversation.item.truncate", "event_id": "evt_bad1"}))
    error = (await client.until("error"))["error"]
    assert error["event_id"] == "evt_bad1"
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "missing_required_parameter"
    await client.send_raw(json.dumps({"type": "response.audio.delta", "event_id": "evt_bad2"}))
    error = (await client.until("error"))["error"]
    assert (error["event_id"], error["code"], error["param"]) == ("evt_bad2", "invalid_value", "type")
    await client.send_raw("{not json")
    error = (await client.until("error"))["error"]
    assert error["code"] == "invalid_json" and error["event_id"] is None
    await client.send_raw(json.dumps({"type": "input_audio_buffer.append", "audio": "***", "event_id": "e3"}))
    assert (await client.until("error"))["error"]["event_id"] == "e3"
    bad_session = {"type": "session.update", "event_id": "e4", "session": {"type": "realtime", "audio": 5}}
    await client.send_raw(json.dumps(bad_session))
    error = (await client.until("error"))["error"]
    assert (error["event_id"], error["param"]) == ("e4", "session.audio")
    assert [e.get("event_id") for e in sim_state.invalid_events] == ["evt_bad1", "evt_bad2", None, "e3", "e4"]
    assert sim_state.invalid_events[2]["raw"] == "{not json"
    assert {"type": "input_audio_buffer.append"} in sim_state.client_events
    # the connection survived all of it
    await client.configure()


async def test_vad_commit_transcript_and_chitchat_reply(connect: Connect) -> None:
    client = await connect()
    await client.configure()
    await client.speak(800)
    events = await client.through("response.done")
    names = types(events)
    assert names[:6] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "response.created",
    ]
    started, stopped, committed, added = events[:4]
    assert started["audio_start_ms"] == 0 and stopped["audio_end_ms"] == 800 + 500
    assert started["item_id"] == stopped["item_id"] == committed["item_id"] == added["item"]["id"]
    assert added["item"]["role"] == "user" and added["item"]["content"][0]["type"] == "input_audio"
    assert committed["previous_item_id"] is None
    # the response starts before the transcript is out; the transcript is the scenario's
    assert names.index("response.created") < names.index(
        "conversation.item.input_audio_transcription.completed"
    )
    transcript = next(e for e in events if e["type"].endswith("input_audio_transcription.completed"))
    assert transcript["transcript"] == SCENARIO.turns[0].say and transcript["item_id"] == committed["item_id"]
    # the reply: pcmu audio of the expected length, transcript deltas adding up to the reply
    reply = SCENARIO.turns[0].reply
    assert reply is not None
    assert len(audio_bytes(events)) == 8 * speech_ms(reply) == 8 * MS_PER_CHAR * len(reply)
    deltas = [e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta"]
    assert "".join(deltas) == reply and len(deltas) == len(reply.split())
    done = events[-1]["response"]
    assert done["status"] == "completed" and done["usage"]["total_tokens"] > 0
    assert done["output"][0]["content"][0]["transcript"] == reply
    assert not any(e["type"] == "response.function_call_arguments.done" for e in events)


async def test_default_session_speaks_pcm16_at_24_khz(connect: Connect) -> None:
    client = await connect()
    await client.speak(600, fmt="pcm16")
    events = await client.through("response.done")
    assert "input_audio_buffer.committed" in types(events)
    reply = SCENARIO.turns[0].reply
    assert reply is not None
    assert len(audio_bytes(events)) == 48 * speech_ms(reply)


async def test_greeting_then_factual_turn_calls_the_supervisor_tool(connect: Connect) -> None:
    client = await connect()
    await client.configure()
    await client.send({"type": "response.create"})
    greeting = await client.through("response.done")
    assert [e["transcript"] for e in greeting if e["type"] == "response.output_audio_transcript.done"] == [
        SCENARIO.greeting
    ]
    for _ in range(2):  # turn 0 (chitchat) and turn 1 (factual)
        await client.speak(600)
        events = await client.through("response.done")
    names = types(events)
    call_done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert call_done["name"] == SUPERVISOR_TOOL and call_done["call_id"].startswith("call_")
    turn = SCENARIO.turns[1]
    assert json.loads(call_done["arguments"]) == {"relevantContextFromLastUserMessage": turn.say}
    spoken = [e["transcript"] for e in events if e["type"] == "response.output_audio_transcript.done"]
    assert spoken == [turn.filler]
    assert names.index("response.output_audio.done") < names.index("response.function_call_arguments.done")
    output = events[-1]["response"]["output"]
    assert [o["type"] for o in output] == ["message", "function_call"]
    # the tool result is spoken back verbatim, in the conversation after the function call
    answer = "Yes, used tents can be returned within 60 days."
    result = {"type": "function_call_output", "call_id": call_done["call_id"], "output": answer}
    await client.send({"type": "conversation.item.create", "item": result})
    added = await client.until("conversation.item.added")
    assert added["previous_item_id"] == call_done["item_id"]
    await client.send({"type": "response.create"})
    events = await client.through("response.done")
    assert [e["transcript"] for e in events if e["type"] == "response.output_audio_transcript.done"] == [
        answer
    ]


async def test_response_create_while_active_is_an_error(connect: Connect) -> None:
    client = await connect()
    await client.configure()
    await client.send({"type": "response.create"})
    await client.until("response.output_audio.delta")
    await client.send({"type": "response.create", "event_id": "evt_second"})
    events = await client.through("error")
    error = events[-1]["error"]
    assert error["code"] == "conversation_already_has_active_response" and error["event_id"] == "evt_second"
    events = await client.through("response.done")
    assert types(events).count("response.done") == 1
    assert events[-1]["response"]["status"] == "completed"


async def test_truncate_checks_generated_audio(connect: Connect) -> None:
    client = await connect()
    await client.configure()
    await client.send({"type": "response.create"})
    events = await client.through("response.done")
    item_id = events[-1]["response"]["output"][0]["id"]
    generated = speech_ms(SCENARIO.greeting)
    too_far = {"item_id": item_id, "content_index": 0, "audio_end_ms": generated + 300}
    await client.send({"type": "conversation.item.truncate", "event_id": "evt_t1", **too_far})
    error = (await client.until("error"))["error"]
    assert error["code"] == "invalid_value" and error["event_id"] == "evt_t1"
    assert error["message"] == f"Audio content of {generated}ms is already shorter than {generated + 300}ms"
    await client.send(
        {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 700}
    )
    truncated = await client.until("conversation.item.truncated")
    assert (truncated["item_id"], truncated["audio_end_ms"]) == (item_id, 700)
    await client.send(
        {"type": "conversation.item.truncate", "item_id": "item_nope", "content_index": 0, "audio_end_ms": 1}
    )
    assert (await client.until("error"))["error"]["param"] == "item_id"


async def test_barge_in_cancels_the_active_response(connect: Connect) -> None:
    client = await connect()
    await client.configure()
    await client.send({"type": "response.create"})
    await client.until("response.output_audio.delta")
    await client.speak(300, silence_ms=0)
    events = await client.through("response.done")
    names = types(events)
    assert names.index("input_audio_buffer.speech_started") < names.index("response.done")
    done = events[-1]["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    heard = len(audio_bytes(events + client.events)) / 8
    assert 0 < heard < speech_ms(SCENARIO.greeting)
    item = done["output"][0]
    assert item["status"] == "incomplete"
    assert SCENARIO.greeting.startswith(item["content"][0]["transcript"])
    # the caller's turn is then committed and answered as usual
    await client.conn.send_raw(
        json.dumps(
            {
                "type": "input_audio_buffer.append",
                "audio": base64.b64encode(audio.silence(600, "pcmu")).decode(),
            }
        )
    )
    events = await client.through("response.done")
    assert "input_audio_buffer.committed" in types(events)
    assert events[-1]["response"]["status"] == "completed"


async def test_out_of_band_hold_line_and_explicit_commit(connect: Connect) -> None:
    client = await connect()
    session = json.loads(json.dumps(PCMU_SESSION))
    session["audio"]["input"]["turn_detection"] = None
    updated = await client.configure(session)
    assert updated["session"]["audio"]["input"]["turn_detection"] is None
    hold = {"conversation": "none", "instructions": 'Say exactly: "Still checking, one moment."'}
    await client.send({"type": "response.create", "response": hold})
    events = await client.through("response.done")
    assert "conversation.item.added" not in types(events)
    assert events[-1]["response"]["conversation_id"] is None
    assert [e["transcript"] for e in events if e["type"].endswith("transcript.done")] == [
        "Still checking, one moment."
    ]
    # no turn detection: speech is only committed when the client says so
    await client.speak(400, silence_ms=200)
    await client.send({"type": "input_audio_buffer.commit"})
    events = await client.through("input_audio_buffer.committed")
    assert "input_audio_buffer.speech_started" not in types(events)
    events = await client.through("conversation.item.input_audio_transcription.completed")
    assert events[-1]["transcript"] == SCENARIO.turns[0].say
    await client.send({"type": "input_audio_buffer.commit", "event_id": "evt_empty"})
    error = (await client.until("error"))["error"]
    assert (error["code"], error["event_id"]) == ("input_audio_buffer_commit_empty", "evt_empty")


async def test_full_call_events_match_the_sdk_types(connect: Connect) -> None:
    """Every event of a whole call (greeting, chitchat, tool call, answer, barge-in) validates."""
    client = await connect()
    await client.configure()
    await client.send({"type": "response.create"})
    await client.until("response.done")
    await client.speak(600)
    await client.until("response.done")
    await client.speak(600)
    call = next(e for e in await client.through("response.done") if e["type"].endswith("arguments.done"))
    long_answer = "Our Trail Tested guarantee covers used tents for sixty days from the purchase date."
    await client.send(
        {
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": call["call_id"], "output": long_answer},
        }
    )
    await client.send({"type": "response.create"})
    await client.until("response.output_audio_transcript.delta")
    await client.speak(600)  # barge-in: cancels the answer, then the caller's turn is answered
    await client.until("response.created")
    await client.send({"type": "response.cancel"})
    done = (await client.until("response.done"))["response"]
    assert done["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    await client.send({"type": "response.cancel", "event_id": "evt_none"})
    error = (await client.until("error"))["error"]
    assert (error["code"], error["event_id"]) == ("response_cancel_not_active", "evt_none")
    reasons = [
        e["response"]["status_details"].get("reason") for e in client.events if e["type"] == "response.done"
    ]
    assert reasons == [None, None, None, "turn_detected", "client_cancelled"]
    seen = set(types(client.events))
    assert {"session.created", "session.updated", "response.function_call_arguments.delta"} <= seen
    for event in client.events:
        SERVER_EVENT.validate_python(event)
