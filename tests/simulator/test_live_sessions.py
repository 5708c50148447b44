"""GPT-Live WebRTC and SIP sessions of the simulator: creation, the ``live.transport.incoming``
webhook, accept/reject/refer/hangup, and the sideband a virtual caller plays — through the SDK."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import openai
import pytest
import websockets
from aiohttp import web
from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI

from simulator.live_calls import add_live_call
from simulator.live_sip import send_live_incoming_call
from simulator.scenario import Scenario, Turn
from simulator.sip import new_webhook_secret
from tests.support.live import OpenLive, live_sims
from tests.support.simulator import OFFER

SPEED = 10.0
ANSWER = "Yes, within sixty days."
SCENARIO = Scenario(
    name="live-sessions",
    quiet_ms=200,
    turns=[
        Turn(say="Hi there.", reply="Hello!", speech_ms=400),
        Turn(say="Can I return a tent?", filler="One moment.", speech_ms=500, dtmf="12"),
    ],
)
MEDIA_SESSION: dict[str, Any] = {
    "model": "gpt-live-1.1",
    "instructions": "You are Robin.",
    "audio": {"output": {"voice": "marin"}},
}


@pytest.fixture
async def open_live(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> AsyncIterator[OpenLive]:
    async with live_sims(aiohttp_server) as open_sim:
        yield open_sim


async def answer_delegations(client: Any, count: int) -> None:
    """Play the service: answer each delegation with commentary."""
    for _ in range(count):
        created = await client.until("session.delegation.created", 5)
        await client.conn.session.commentary.append(content=ANSWER, delegation_id=created["delegation"]["id"])


async def test_webrtc_create_returns_the_session_and_an_answer(open_live: OpenLive) -> None:
    sim = await open_live(SCENARIO, speed=SPEED)
    created = await sim.sdk.live.create(session=MEDIA_SESSION, transport={"type": "webrtc", "sdp": OFFER})
    assert created.session.id.startswith("live_") and created.transport.type == "webrtc"
    assert created.transport.sdp.startswith("v=0")
    call = sim.state.live_calls[created.session.id]
    assert (call.kind, call.status, call.session) == ("webrtc", "active", MEDIA_SESSION)
    assert sim.state.call_actions[0][:2] == (created.session.id, "create")
    bad_cases: list[tuple[dict[str, Any], str]] = [
        (
            {"session": {**MEDIA_SESSION, "voice": "x"}, "transport": {"type": "webrtc", "sdp": OFFER}},
            "session.voice",
        ),
        ({"session": MEDIA_SESSION, "transport": {"type": "webrtc", "sdp": "hello"}}, "transport.sdp"),
        ({"session": MEDIA_SESSION}, "transport"),
    ]
    async with aiohttp.ClientSession() as http:
        for body, param in bad_cases:
            headers = {"Authorization": "Bearer x"}
            async with http.post(
                sim.server.make_url("/v1/live/sessions"), json=body, headers=headers
            ) as resp:
                assert resp.status == 400 and (await resp.json())["error"]["param"] == param
        async with http.post(sim.server.make_url("/v1/live/sessions"), json={}) as resp:
            assert resp.status == 401
    assert len(sim.state.live_calls) == 1


async def test_webrtc_sideband_plays_the_caller_and_hangs_up(open_live: OpenLive) -> None:
    sim = await open_live(SCENARIO, speed=SPEED)
    created = await sim.sdk.live.create(session=MEDIA_SESSION, transport={"type": "webrtc", "sdp": OFFER})
    client = await sim.attach(created.session.id)
    started = await client.until("session.started")
    assert started["session"]["id"] == created.session.id and "format" not in started["session"]["audio"]
    await client.conn.session.update(
        session={"delegation": {"type": "client", "acknowledgement_delay_ms": 0}}
    )
    await answer_delegations(client, 1)
    closed = await client.until("session.closed", 8)
    await client.until_closed()
    assert closed["reason"] == "remote_hangup"
    record = sim.session
    assert [t.say for t in record.caller_turns] == [t.say for t in SCENARIO.turns]
    assert record.spoken() == ["Hello!", "One moment.", ANSWER]
    assert sim.state.live_calls[created.session.id].status == "caller_hung_up"
    assert not client.of_type("transport.dtmf.received")  # WebRTC: no keypad
    reflected = client.of_type("session.input_audio.append")
    assert reflected and len(reflected) * 20 == pytest.approx(record.timeline_ms, abs=20)
    output = client.of_type("session.output_audio.delta")
    assert output[0]["start_ms"] == 0 and all(
        b["start_ms"] == a["end_ms"] for a, b in itertools.pairwise(output)
    )
    assert not sim.state.live_errors_sent and not sim.state.live_invalid_events


async def test_sip_call_webhook_accept_dtmf_refer(
    open_live: OpenLive, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> None:
    sim = await open_live(SCENARIO, speed=SPEED)
    secret = new_webhook_secret()
    received: list[Any] = []

    async def webhook(request: web.Request) -> web.Response:
        body = (await request.read()).decode()
        received.append(AsyncOpenAI(api_key="x").webhooks.unwrap(body, dict(request.headers), secret=secret))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/openai/webhook", webhook)
    service = await aiohttp_server(app)
    delivery = await send_live_incoming_call(
        str(service.make_url("/openai/webhook")), secret, state=sim.state
    )
    assert delivery.statuses == [200]
    event = received[0]
    assert event.type == "live.transport.incoming" and event.data.session_id == delivery.call_id
    session_id = delivery.call_id
    sessions = sim.sdk.live.sessions
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:  # ringing: no sideband yet
        await sim.attach(session_id)
    assert refused.value.response.status_code == 404
    with pytest.raises(openai.BadRequestError):
        await sessions.accept(
            session_id, session={"type": "live", "model": "gpt-live-1.1", "audio": {"format": {}}}
        )  # type: ignore[typeddict-unknown-key]
    await sessions.accept(session_id, session={"type": "live", "model": "gpt-live-1.1"})
    with pytest.raises(openai.BadRequestError):
        await sessions.accept(session_id, session={"type": "live", "model": "gpt-live-1.1"})
    with pytest.raises(openai.BadRequestError):
        await sessions.reject(session_id, status_code=486)  # no longer ringing
    client = await sim.attach(session_id)
    await client.conn.transport.dtmf.send(event="5", event_id="k1")
    sent = await client.until("transport.dtmf.sent")
    assert (sent["event"], sent["client_event_id"]) == ("5", "k1")
    await answer_delegations(client, 1)
    digits = [e["event"] for e in client.of_type("transport.dtmf.received")]
    assert digits == ["1", "2"]
    await sessions.refer(session_id, target_uri="tel:+15555550199")
    closed = await client.until("session.closed", 5)
    await client.until_closed()
    assert closed["reason"] == "close_requested"
    assert sim.state.live_calls[session_id].status == "referred"
    with pytest.raises(openai.NotFoundError):
        await sessions.hangup(session_id)
    actions = [action for sid, action, _ in sim.state.call_actions if sid == session_id]
    assert actions == ["accept", "refer"]


async def test_sip_reject_and_hangup(open_live: OpenLive) -> None:
    sim = await open_live(SCENARIO, speed=SPEED)
    sessions = sim.sdk.live.sessions
    ringing, other = add_live_call(sim.state, "sip"), add_live_call(sim.state, "sip")
    with pytest.raises(openai.BadRequestError):
        await sessions.reject(ringing.id, status_code=200)
    await sessions.reject(ringing.id, status_code=486)
    assert ringing.status == "rejected"
    await sessions.accept(other.id, session={"type": "live", "model": "gpt-live-1.1"})
    client = await sim.attach(other.id)
    await client.until("session.started")
    await sessions.hangup(other.id)
    assert (await client.until("session.closed", 3))["reason"] == "close_requested"
    with pytest.raises(openai.NotFoundError):
        await sessions.hangup("live_unknown")
