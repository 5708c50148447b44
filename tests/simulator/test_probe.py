"""The probe model (load tests): its schedule options and a supervisor hand-over streamed as
the Realtime API streams a function call, driven through the real ``openai`` SDK."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from simulator.app import create_simulator_app
from simulator.probe import HOLD_MS, LEAD_MS, ProbeConfig, read_stamp
from simulator.realtime_response import SUPERVISOR_TOOL
from simulator.scenario import Scenario
from tests.support.simulator import Events

SERVER_EVENT = TypeAdapter(RealtimeServerEvent)


def test_schedule_of_barge_ins_and_hand_overs() -> None:
    default = ProbeConfig()
    assert [default.barged_in(n) for n in range(4)] == [False, True, False, True]  # every second
    assert not any(default.hands_over(t) for t in range(1, 10))  # no supervisor turns
    every_third = ProbeConfig(barge_in_every=3, supervisor_every=3)
    assert [n for n in range(9) if every_third.barged_in(n)] == [2, 5, 8]
    assert [t for t in range(1, 10) if every_third.hands_over(t)] == [3, 6, 9]
    assert not any(ProbeConfig(barge_in_every=0).barged_in(n) for n in range(10))


@pytest.mark.parametrize("bad", [{"delta_ms": 30}, {"barge_in_every": -1}, {"supervisor_every": -2}])
def test_out_of_range_options_are_refused(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        ProbeConfig(**bad)


def _deltas(events: list[dict[str, Any]]) -> list[bytes]:
    return [base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"]


async def test_hand_over_is_a_streamed_function_call_whose_answer_is_spoken(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> None:
    config = ProbeConfig(delta_ms=20, barge_in_every=1, supervisor_every=1)
    app = create_simulator_app(Scenario(name="probe", greeting="Hi.", turns=[]), probe=config)
    server = await aiohttp_server(app)
    sdk = AsyncOpenAI(base_url=str(server.make_url("/v1")), api_key="test")
    async with sdk.realtime.connect(model="gpt-realtime") as conn:
        client = Events(conn)
        await client.until("session.created")
        await conn.send({"type": "response.create", "response": {"metadata": {"purpose": "greeting"}}})
        greeting = await client.through("response.done")
        assert greeting[0]["response"]["metadata"] == {"purpose": "greeting"}
        deltas = _deltas(greeting)
        assert {len(d) for d in deltas} == {160}  # 20 ms of μ-law each
        assert len(deltas) >= (LEAD_MS + 1400) // 20  # barged in on after 1.5 s
        assert read_stamp(base64.b64encode(deltas[0]).decode()) is not None
        assert greeting[-1]["response"]["status"] == "cancelled"

        turn = await client.through("conversation.item.input_audio_transcription.completed")
        assert turn[-1]["transcript"] == "Probe turn 0."
        hand_over = await client.through("response.done")
        kinds = [e["type"] for e in hand_over]
        assert kinds == [
            "response.created", "response.output_item.added", "conversation.item.added",
            "response.function_call_arguments.delta", "response.function_call_arguments.delta",
            "response.function_call_arguments.done", "response.output_item.done",
            "conversation.item.done", "response.done",
        ]  # fmt: skip
        done = hand_over[5]
        assert done["name"] == SUPERVISOR_TOOL
        assert json.loads(done["arguments"]) == {"relevantContextFromLastUserMessage": "Probe turn 0."}
        assert "".join(e["delta"] for e in hand_over[3:5]) == done["arguments"]
        assert hand_over[-1]["response"]["output"][0]["call_id"] == done["call_id"]

        # asked for before the answer: a hold line, out of band, then still waiting
        hold = {"conversation": "none", "metadata": {"purpose": "hold_line"}}
        await conn.send({"type": "response.create", "response": hold})
        held = await client.through("response.done")
        assert held[0]["response"]["metadata"] == {"purpose": "hold_line"}
        assert "conversation.item.added" not in [e["type"] for e in held]
        assert len(_deltas(held)) == HOLD_MS // 20

        # truncations land on the session's delta timeline: the hold line's audio comes after
        # the greeting's deltas; an unknown item or a non-integer end cannot be placed
        held_item = next(e["item_id"] for e in held if e["type"] == "response.output_audio.delta")
        for item_id, end in ((held_item, 100), ("item_unknown", 100), (held_item, 100.0)):
            truncate = {"type": "conversation.item.truncate", "item_id": item_id, "audio_end_ms": end}
            await conn.send_raw(json.dumps({**truncate, "content_index": 0}))
            await client.until("conversation.item.truncated")

        output = {"type": "function_call_output", "call_id": done["call_id"], "output": "Yes, you can."}
        await conn.send({"type": "conversation.item.create", "item": output})
        echoed = await client.until("conversation.item.added")
        assert echoed["item"]["type"] == "function_call_output" and echoed["item"]["id"]
        await conn.send({"type": "response.create", "response": {"metadata": {"purpose": "answer"}}})
        answer = await client.until("response.created")
        assert answer["response"]["metadata"] == {"purpose": "answer"}
        await client.drain()
    for event in client.events:  # every event has the shape of the SDK's GA types
        SERVER_EVENT.validate_python(event)

    async with aiohttp.ClientSession() as http, http.get(server.make_url("/_probe")) as resp:
        report = await resp.json()
    assert report["config"] == {"delta_ms": 20, "barge_in_every": 1, "supervisor_every": 1}
    (call,) = report["calls"].values()  # no stamped caller audio: filed under the unknown tag
    ((_, truncated_ms),) = call["truncations"]
    assert truncated_ms == len(deltas) * 20 + 100 and call["unmapped_truncations"] == 2
    handovers = report["handovers"]
    assert {k: handovers[k] for k in ("asked", "answered", "unanswered", "pending", "hold_lines")} == {
        "asked": 1, "answered": 1, "unanswered": 0, "pending": 0, "hold_lines": 1,
    }  # fmt: skip
    # from the hand-over to the answer's response.create: the hold line's paced audio came between
    # (its last delta is due HOLD_MS - LEAD_MS - one delta after it started)
    assert handovers["answer_ms"]["n"] == 1 and handovers["answer_ms"]["p50"] >= HOLD_MS - LEAD_MS - 20
