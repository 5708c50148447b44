"""The call controller against the simulator's realtime WS, through the real openai SDK.

The caller side is a recording sink that acknowledges marks on demand (what a phone would
do once audio has played), so the heard position is under the test's control.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI
from structlog.testing import capture_logs

from callrecord.decisions import Decision
from callrecord.history import CallHistory
from infra.settings import Settings
from responder.core.controller import CallController, ControllerConfig
from responder.engines.realtime.connection import open_realtime
from responder.engines.realtime.session import build_session
from simulator.app import create_simulator_app
from simulator.scenario import Scenario, Turn
from simulator.state import STATE_KEY, SimulatorState


@dataclass
class RecordingCaller:
    audio: list[tuple[str, str]] = field(default_factory=list)
    clears: int = 0

    async def send_audio(self, b64_audio: str, mark: str) -> None:
        self.audio.append((b64_audio, mark))

    async def clear_audio(self) -> None:
        self.clears += 1


@pytest.fixture
async def simulator() -> AsyncIterator[TestServer]:
    scenario = Scenario(
        name="unit", greeting="Hello there, this is Robin.", turns=[Turn(say="Hi", reply="Hey!")]
    )
    server = TestServer(create_simulator_app(scenario, speed=8.0))
    await server.start_server()
    yield server
    await server.close()


async def never_called(call_id: str, context: str, *, user_item_id: str | None = None) -> Decision:
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
        async with open_realtime(client, "CAunit1", model="gpt-realtime") as rt:
            ctl = CallController(
                "CAunit1", rt, caller, history, never_called, ControllerConfig(greeting=False)
            )
            await ctl.start(build_session(Settings()))
            runner = asyncio.create_task(ctl.run())
            bad_id = await rt.send(
                {
                    "type": "conversation.item.truncate",
                    "item_id": "nope",
                    "content_index": 0,
                    "audio_end_ms": 5,
                }
            )
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
    async with open_realtime(client, "CAunit2", model="gpt-realtime") as rt:
        ctl = CallController("CAunit2", rt, caller, history, never_called, ControllerConfig())
        await ctl.start(build_session(Settings()))
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
