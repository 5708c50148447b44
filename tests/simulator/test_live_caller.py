"""The simulated Twilio caller on a GPT-Live call: silent media is not the agent talking.

GPT-Live's primary WebSocket sends one continuous track, silence between replies included. A
service may relay all of it to Twilio; the caller must still take its turns when the agent is
quiet and count only voiced audio towards ``barge_in_after_ms``. The end-to-end test bridges
the caller to the Live double the simplest way: every frame passed through both ways.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI

from simulator.caller import place_call
from simulator.caller_playback import PlaybackBuffer
from simulator.scenario import Scenario, Turn
from tests.support.live import OpenLive, live_session, live_sims
from tests.support.waits import wait_until

SPEED = 10.0
# Long (about 28 s of speech, 2.8 s of wall clock at SPEED): the barge-in must land in it even when
# a loaded machine stalls this process. After a stall the caller's audio catches up in a burst,
# the session timeline jumps ahead of what the caller has played, and a short answer would be
# over on the model's side before the caller starts to speak. The barge-in cuts it, so its
# length costs no test time.
ANSWER = (
    "Yes, you can return it within sixty days, even used, under our Trail Tested guarantee, "
    "at any store or by mail. Bring the tent with its poles, stakes and bag if you still have "
    "them, along with the receipt or the order number, and we will refund the original payment "
    "method. A store can also swap it for another size or model on the spot, and the mail "
    "return label is free for members of our outdoor club."
)
SCENARIO = Scenario(
    name="live-caller",
    greeting="Hi, Robin here.",
    quiet_ms=300,
    turns=[
        Turn(say="Hi there.", reply="Hello!", speech_ms=400),
        Turn(say="Can I return a tent?", filler="One moment.", speech_ms=600),
        # barges into the answer: 800 ms of filler, then 700 ms of the answer
        Turn(say="Great.", reply="Glad to help.", speech_ms=400, barge_in_after_ms=1500),
    ],
)


@pytest.fixture
async def open_live(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> AsyncIterator[OpenLive]:
    async with live_sims(aiohttp_server) as open_sim:
        yield open_sim


def test_silent_media_is_played_but_not_playing() -> None:
    buffer = PlaybackBuffer()
    buffer.add_media(200)
    buffer.add_media(300, silent=True)
    buffer.add_media(100)
    assert buffer.playing and buffer.voiced_received_ms == 300 and buffer.received_ms == 600
    buffer.advance(250)
    assert buffer.voiced_played_ms == 200 and buffer.playing
    buffer.advance(250)
    assert buffer.voiced_played_ms == 200 and buffer.playing  # the voiced 100 ms still to come
    buffer.advance(100)
    assert buffer.voiced_played_ms == 300 and not buffer.playing
    buffer.add_media(500, silent=True)
    assert not buffer.playing  # only silence queued
    buffer.add_media(100)
    buffer.clear()
    assert not buffer.playing and buffer.voiced_played_ms == 300


def bridge_app(live_url: str) -> web.Application:
    """A minimal Twilio ↔ GPT-Live bridge: TwiML, then every frame passed through."""

    async def voice(request: web.Request) -> web.Response:
        url = str(request.url.with_scheme("ws").with_path("/media"))
        twiml = f'<Response><Connect><Stream url="{url}"/></Connect></Response>'
        return web.Response(text=twiml, content_type="text/xml")

    async def media(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sdk = AsyncOpenAI(base_url=live_url, api_key="x", max_retries=0)
        async with sdk.live.connect() as conn:
            relay: asyncio.Task[None] | None = None

            async def from_live(stream_sid: str) -> None:
                with contextlib.suppress(Exception):
                    while True:
                        event = json.loads(await conn.recv_bytes())
                        if event["type"] == "session.output_audio.delta":
                            frame = {
                                "event": "media",
                                "streamSid": stream_sid,
                                "media": {"payload": event["delta"]},
                            }
                            await ws.send_str(json.dumps(frame))
                        elif event["type"] == "session.delegation.created":
                            dlg = event["delegation"]["id"]
                            await conn.session.commentary.append(content=ANSWER, delegation_id=dlg)

            async for msg in ws:
                frame: dict[str, Any] = json.loads(msg.data)
                if frame["event"] == "start":
                    await conn.session.start(session=live_session())
                    await conn.session.commentary.append(content="Greet the caller.", delegation_id=None)
                    relay = asyncio.create_task(from_live(frame["streamSid"]))
                elif frame["event"] == "media":
                    payload = frame["media"]["payload"]
                    await conn.send_raw('{"type":"session.input_audio.append","audio":"' + payload + '"}')
                elif frame["event"] == "stop":
                    await conn.session.close()
                    break
            if relay is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(relay), 1)
                relay.cancel()
        return ws

    app = web.Application()
    app.router.add_post("/twilio/voice", voice)
    app.router.add_get("/media", media)
    return app


async def test_caller_takes_its_turns_and_barges_in_over_the_continuous_track(
    open_live: OpenLive, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> None:
    sim = await open_live(SCENARIO, speed=SPEED)
    bridge = await aiohttp_server(bridge_app(sim.base_url))
    report = await place_call(str(bridge.make_url("")), SCENARIO, auth_token="t", speed=SPEED, timeout_s=15)
    record = sim.session
    assert [t.say for t in record.caller_turns] == [t.say for t in SCENARIO.turns]
    assert [t.barged_in for t in record.caller_turns] == [False, False, True]
    assert [u.kind for u in record.utterances] == [
        "greeting",
        "reply",
        "acknowledgement",
        "commentary",
        "reply",
    ]
    answer = record.utterances[3]
    assert answer.cut and ANSWER.startswith(answer.said) and answer.said
    assert record.spoken("reply") == ["Hello!", "Glad to help."]
    assert report.audio_ms_received > sum(u.said_ms for u in record.utterances)  # silence relayed too
    assert not report.hung_up_by_service and report.malformed_frames == 0
    assert not sim.state.live_errors_sent and not sim.state.live_invalid_events
    await wait_until(
        lambda: record.closed_reason, 3, what="the bridge's session.close"
    )  # after the caller's stop
    assert record.closed_reason == "close_requested"
