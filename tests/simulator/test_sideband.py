"""Sideband of a virtual WebRTC/SIP call: the simulator plays the caller; driven by the real SDK."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp.test_utils import TestServer
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from simulator.realtime_response import SUPERVISOR_TOOL
from simulator.scenario import Scenario, Turn, load_scenario
from simulator.state import STATE_KEY, SimulatorState
from tests.support.simulator import END_CALL, ESCALATE, OFFER, SESSION, SUPERVISOR, Events, sdk, simulator_app

SERVER_EVENT = TypeAdapter(RealtimeServerEvent)
ANSWER = "Yes, used tents can be returned within 60 days under the Trail Tested guarantee."

SCENARIO = Scenario(
    name="sideband",
    greeting="Thanks for calling Northwind Outfitters.",
    quiet_ms=1000,  # after the last turn: room for the test's refer before the caller hangs up
    turns=[
        Turn(say="Hi, how are you today?", reply="I'm doing great, thanks for asking!"),
        Turn(say="Can I return a tent I already used on a camping trip?", filler="Let me check."),
        Turn(say="Can I talk to a real person please?", filler="Sure.", tool="escalate_to_human"),
    ],
)

Connect = Callable[[str], Awaitable[Events]]


@pytest.fixture
async def server(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> TestServer:
    return await aiohttp_server(simulator_app(SCENARIO, speed=8.0))


@pytest.fixture
async def connect(server: TestServer) -> AsyncIterator[Connect]:
    """Sideband connections over the SDK; afterwards every event must match the SDK's types."""
    managers: list[Any] = []
    opened: list[Events] = []

    async def open_sideband(call_id: str) -> Events:
        manager = sdk(str(server.make_url(""))).realtime.connect(call_id=call_id)
        events = Events(await manager.__aenter__())
        managers.append(manager)
        opened.append(events)
        return events

    yield open_sideband
    for manager in managers:
        await manager.__aexit__(None, None, None)
    for events in opened:
        for event in events.events:
            SERVER_EVENT.validate_python(event)


def state_of(server: TestServer) -> SimulatorState:
    return server.app[STATE_KEY]


async def webrtc_call(server: TestServer, session: dict[str, Any]) -> str:
    raw = await sdk(str(server.make_url(""))).realtime.calls.with_raw_response.create(
        sdp=OFFER, session=session
    )
    return str(raw.headers["location"].rsplit("/", 1)[1])


async def send_output(events: Events, call_id: str, output: str, **response: Any) -> None:
    item = {"type": "function_call_output", "call_id": call_id, "output": output}
    await events.conn.send({"type": "conversation.item.create", "item": item})
    await events.conn.send({"type": "response.create", "response": response})


async def test_virtual_caller_plays_turns_with_tool_calls(server: TestServer, connect: Connect) -> None:
    session = {**SESSION, "tools": [SUPERVISOR, ESCALATE]}
    call_id = await webrtc_call(server, session)
    events = await connect(call_id)
    created = await events.until("session.created")
    assert [t["name"] for t in created["session"]["tools"]] == [SUPERVISOR_TOOL, "escalate_to_human"]
    await events.conn.send({"type": "response.create"})  # the greeting
    greeting = await events.until("response.output_audio_transcript.done")
    assert greeting["transcript"] == SCENARIO.greeting

    # Turn 1, chitchat: the caller speaks, the model answers directly.
    started = await events.until("input_audio_buffer.speech_started")
    stopped = await events.until("input_audio_buffer.speech_stopped", item_id=started["item_id"])
    assert stopped["audio_end_ms"] > started["audio_start_ms"]
    await events.until("input_audio_buffer.committed", item_id=started["item_id"])
    added = await events.until("conversation.item.added")
    assert added["item"]["id"] == started["item_id"] and added["item"]["role"] == "user"
    transcript = await events.until("conversation.item.input_audio_transcription.completed")
    assert transcript["transcript"] == SCENARIO.turns[0].say
    reply = await events.until("response.output_audio_transcript.done")
    assert reply["transcript"] == SCENARIO.turns[0].reply

    # Turn 2, factual: filler + supervisor tool call; the tool output is spoken.
    transcript = await events.until("conversation.item.input_audio_transcription.completed")
    assert transcript["transcript"] == SCENARIO.turns[1].say
    filler = await events.until("response.output_audio_transcript.done")
    assert filler["transcript"] == "Let me check."
    call = await events.until("response.function_call_arguments.done")
    assert call["name"] == SUPERVISOR_TOOL
    assert json.loads(call["arguments"]) == {"relevantContextFromLastUserMessage": SCENARIO.turns[1].say}
    await events.until("response.done")
    await asyncio.sleep(0.6)  # the caller waits for the answer instead of speaking on
    await events.drain()
    assert events.types().count("input_audio_buffer.speech_started") == 2
    await send_output(events, call["call_id"], json.dumps({"nextResponse": ANSWER}))
    spoken = await events.until("response.output_audio_transcript.done")
    assert spoken["transcript"] == ANSWER

    # Turn 3: escalate_to_human with a reason; the closing line comes from the instructions.
    escalate = await events.until("response.function_call_arguments.done")
    assert escalate["name"] == "escalate_to_human"
    assert json.loads(escalate["arguments"]) == {"reason": SCENARIO.turns[2].say}
    await events.until("response.done")
    await send_output(events, escalate["call_id"], "ok", instructions='Say exactly: "Connecting you now."')
    closing = await events.until("response.output_audio_transcript.done")
    assert closing["transcript"] == "Connecting you now."
    await events.until("output_audio_buffer.stopped")
    await sdk(str(server.make_url(""))).realtime.calls.refer(call_id, target_uri="tel:+15555550199")
    await events.until_closed()

    types = events.types()
    assert "response.output_audio.delta" not in types  # the audio went to the caller, not here
    assert types.count("input_audio_buffer.speech_started") == 3
    assert types.count("output_audio_buffer.started") == types.count("output_audio_buffer.stopped") == 6
    assert state_of(server).calls[call_id].status == "referred"
    assert state_of(server).errors_sent == []


async def test_sip_call_uses_the_accepted_session_and_caller_hangs_up(
    server: TestServer, connect: Connect
) -> None:
    state = state_of(server)
    call = state.add_call("sip")
    # The escalation tool is not declared: the virtual responder falls back to the supervisor.
    session = {**SESSION, "instructions": "You are Sam.", "tools": [SUPERVISOR, END_CALL]}
    await sdk(str(server.make_url(""))).realtime.calls.accept(call.id, **session)
    events = await connect(call.id)
    created = await events.until("session.created")
    assert created["session"]["instructions"] == "You are Sam."
    assert created["session"]["audio"]["output"]["format"] == {"type": "audio/pcmu"}
    answered = 0
    while (event := await events.next()) is not None:
        if event["type"] == "response.function_call_arguments.done":
            assert event["name"] == SUPERVISOR_TOOL
            await events.until("response.done")
            await send_output(events, event["call_id"], f"Answer {answered}.")
            answered += 1
    assert answered == 2  # turn 2, and turn 3 (escalate_to_human undeclared → supervisor)
    spoken = [e["transcript"] for e in events.events if e["type"] == "response.output_audio_transcript.done"]
    assert spoken == [SCENARIO.turns[0].reply, "Let me check.", "Answer 0.", "Sure.", "Answer 1."]
    assert call.status == "caller_hung_up"  # after its last turn and scenario.quiet_ms of quiet
    with pytest.raises(openai.NotFoundError):
        await sdk(str(server.make_url(""))).realtime.calls.hangup(call.id)


async def test_hangup_closes_the_sideband_mid_call(server: TestServer, connect: Connect) -> None:
    call_id = await webrtc_call(server, SESSION)
    events = await connect(call_id)
    await events.until("input_audio_buffer.speech_started")
    await sdk(str(server.make_url(""))).realtime.calls.hangup(call_id)
    await events.until_closed(within_s=10)
    assert events.closed and state_of(server).calls[call_id].status == "hung_up"
    assert state_of(server).actions_for(call_id)[-1] == ("hangup", {})


async def test_unknown_or_unaccepted_call_is_refused_before_upgrade(server: TestServer) -> None:
    ringing = state_of(server).add_call("sip")
    headers = {"Authorization": "Bearer test"}
    async with aiohttp.ClientSession() as http:
        for call_id in ("rtc_unknown", ringing.id):
            url = server.make_url(f"/v1/realtime?call_id={call_id}")
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await http.ws_connect(url, headers=headers)
            assert info.value.status == 404
        async with http.get(server.make_url("/v1/realtime?call_id=rtc_unknown"), headers=headers) as resp:
            assert (await resp.json())["error"]["code"] == "call_not_found"


async def test_say_exactly_consumes_the_tool_output_and_clear_is_acknowledged(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> None:
    scenario = Scenario(
        name="bye-then-more",
        quiet_ms=300,
        turns=[
            Turn(say="That's all, bye.", filler="Okay.", tool="end_call"),
            Turn(say="Oh wait, one more thing.", reply="Of course, go ahead."),
        ],
    )
    server = await aiohttp_server(simulator_app(scenario, speed=8.0))
    call_id = await webrtc_call(server, {**SESSION, "tools": [SUPERVISOR, END_CALL]})
    manager = sdk(str(server.make_url(""))).realtime.connect(call_id=call_id)
    events = Events(await manager.__aenter__())
    try:
        end_call = await events.until("response.function_call_arguments.done")
        assert end_call["name"] == "end_call"
        await events.until("response.done")
        await send_output(events, end_call["call_id"], '{"ok": true}', instructions='Say exactly: "Goodbye."')
        goodbye = await events.until("response.output_audio_transcript.done")
        assert goodbye["transcript"] == "Goodbye."
        done = await events.until("response.done")
        await events.conn.send({"type": "output_audio_buffer.clear"})
        cleared = await events.until("output_audio_buffer.cleared")
        assert cleared["response_id"] == done["response"]["id"]
        # The next turn gets its own reply: the end_call output was consumed by the goodbye.
        reply = await events.until("response.output_audio_transcript.done")
        assert reply["transcript"] == "Of course, go ahead."
        await events.until_closed()
    finally:
        await manager.__aexit__(None, None, None)
    for event in events.events:
        SERVER_EVENT.validate_python(event)
    assert server.app[STATE_KEY].calls[call_id].status == "caller_hung_up"


async def test_sip_caller_presses_keys_before_speaking(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> None:
    scenario = load_scenario("dtmf").model_copy(update={"quiet_ms": 200})
    server = await aiohttp_server(simulator_app(scenario, speed=8.0))
    call = server.app[STATE_KEY].add_call("sip")
    await sdk(str(server.make_url(""))).realtime.calls.accept(call.id, **SESSION)  # type: ignore[arg-type]
    manager = sdk(str(server.make_url(""))).realtime.connect(call_id=call.id)
    events = Events(await manager.__aenter__())
    try:
        await events.until_closed()
    finally:
        await manager.__aexit__(None, None, None)
    for event in events.events:
        SERVER_EVENT.validate_python(event)
    types = events.types()
    dtmf = [e for e in events.events if e["type"] == "input_audio_buffer.dtmf_event_received"]
    assert [e["event"] for e in dtmf] == list(scenario.turns[0].dtmf or "")
    assert types.index("input_audio_buffer.dtmf_event_received") < types.index(
        "input_audio_buffer.speech_started"
    )
    reply = [e["transcript"] for e in events.events if e["type"] == "response.output_audio_transcript.done"]
    assert reply == [scenario.turns[0].reply]
