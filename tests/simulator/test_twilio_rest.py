"""Twilio REST stand-in, driven by the real ``twilio`` async client; and its link to the caller."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from simulator.caller import place_call
from simulator.scenario import Scenario, Turn
from simulator.twilio_rest import CallUpdate, TwilioRestStandIn

ACCOUNT = "AC" + "1" * 32
TOKEN = "stand-in-auth-token"
DIAL = '<?xml version="1.0" encoding="UTF-8"?><Response><Dial><Number>+15555550199</Number></Dial></Response>'


@pytest.fixture
async def rest() -> AsyncIterator[TwilioRestStandIn]:
    async with TwilioRestStandIn(ACCOUNT, TOKEN) as stand_in:
        yield stand_in


def call_sid() -> str:
    return "CA" + secrets.token_hex(16)


async def test_complete_and_dial_updates_parse_in_the_twilio_client(rest: TwilioRestStandIn) -> None:
    first, second = call_sid(), call_sid()
    first_end = rest.register_call(first, from_="+15555550123")
    second_end = rest.register_call(second)
    client = rest.client()
    try:
        completed = await client.calls(first).update_async(status="completed")
        assert completed.sid == first and completed.status == "completed"
        assert completed.account_sid == ACCOUNT and completed._from == "+15555550123"
        assert completed.end_time is not None and completed.date_created is not None
        assert first_end.fired and first_end.reason == "completed"
        redirected = await client.calls(second).update_async(twiml=DIAL)
        assert redirected.status == "in-progress"
        assert second_end.reason == "dial:+15555550199"
    finally:
        await client.http_client.close()  # type: ignore[attr-defined]
    assert [(u.call_sid, u.fields) for u in rest.updates] == [
        (first, {"Status": "completed"}),
        (second, {"Twiml": DIAL}),
    ]
    assert rest.updates[1].dial_target() == "+15555550199"


async def test_refusals_are_twilio_errors(rest: TwilioRestStandIn) -> None:
    sid = call_sid()
    ended = rest.register_call(sid)
    wrong = Client(ACCOUNT, "wrong-token", http_client=AsyncTwilioHttpClient())
    wrong.api.base_url = rest.base_url
    client = rest.client()
    try:
        with pytest.raises(TwilioRestException) as auth:
            await wrong.calls(sid).update_async(status="completed")
        assert auth.value.status == 401 and auth.value.code == 20003
        with pytest.raises(TwilioRestException) as unknown:
            await client.calls(call_sid()).update_async(status="completed")
        assert unknown.value.status == 404
        for bad in (
            {"status": "ringing"},
            {"twiml": "<Response><Dial>"},
            {"twiml": DIAL, "url": "http://x/"},
        ):
            with pytest.raises(TwilioRestException) as refused:
                await client.calls(sid).update_async(**bad)  # type: ignore[arg-type]
            assert refused.value.status == 400, bad
        assert not ended.fired and rest.updates == []
        await client.calls(sid).update_async(status="completed")
        with pytest.raises(TwilioRestException) as finished:
            await client.calls(sid).update_async(twiml=DIAL)
        assert finished.value.code == 21220
    finally:
        await client.http_client.close()  # type: ignore[attr-defined]
        await wrong.http_client.close()  # type: ignore[attr-defined]


async def service_double(
    aiohttp_server: Callable[..., Awaitable[TestServer]], client: Client, twiml: str | None
) -> tuple[TestServer, list[str]]:
    """A stand-in for our service's Twilio side: answers the webhook, then updates the call by REST."""
    seen: list[str] = []
    tasks: list[asyncio.Task[None]] = []

    async def update_later(sid: str, update: dict[str, str]) -> None:
        await asyncio.sleep(0.3)  # the service decides a moment into the call
        await client.calls(sid).update_async(**update)  # type: ignore[arg-type]

    async def voice(request: web.Request) -> web.Response:
        stream = request.url.with_scheme("ws").with_path("/stream")
        body = f'<Response><Connect><Stream url="{stream}"/></Connect></Response>'
        return web.Response(text=body, content_type="text/xml")

    async def stream(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            frame = json.loads(msg.data)
            seen.append(frame["event"])
            if frame["event"] == "start":
                update = {"twiml": twiml} if twiml else {"status": "completed"}
                tasks.append(asyncio.create_task(update_later(frame["start"]["callSid"], update)))
        return ws

    app = web.Application()
    app.router.add_post("/twilio/voice", voice)
    app.router.add_get("/stream", stream)
    return await aiohttp_server(app), seen


@pytest.mark.parametrize(("twiml", "reason"), [(None, "completed"), (DIAL, "dial:+15555550199")])
async def test_rest_update_ends_the_callers_media_stream(
    rest: TwilioRestStandIn,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    twiml: str | None,
    reason: str,
) -> None:
    client = rest.client()
    server, seen = await service_double(aiohttp_server, client, twiml)
    sid = call_sid()
    ended = rest.register_call(sid)
    scenario = Scenario(name="t", quiet_ms=30000, turns=[Turn(say="Hello?"), Turn(say="Anyone there?")])
    notified: list[CallUpdate] = []
    rest.on_update = notified.append
    try:
        report = await place_call(
            str(server.make_url("")),
            scenario,
            auth_token=TOKEN,
            call_sid=sid,
            account_sid=ACCOUNT,
            speed=4.0,
            timeout_s=10,
            ended=ended,
        )
    finally:
        await client.http_client.close()  # type: ignore[attr-defined]
    assert report.ended_by_rest == reason and not report.hung_up_by_service
    assert report.duration_s < 5  # ended by the update, not by the scenario's 30 s of quiet
    assert seen[:2] == ["connected", "start"] and seen[-1] == "stop"
    assert [u.call_sid for u in notified] == [sid]


async def test_stand_in_needs_basic_auth(rest: TwilioRestStandIn) -> None:
    sid = call_sid()
    rest.register_call(sid)
    url = f"{rest.base_url}/2010-04-01/Accounts/{ACCOUNT}/Calls/{sid}.json"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data={"Status": "completed"}) as resp:
            assert resp.status == 401 and (await resp.json())["code"] == 20003
        garbled = {"Authorization": "Basic !!!not-base64"}
        async with http.post(url, data={"Status": "completed"}, headers=garbled) as resp:
            assert resp.status == 401
    assert rest.updates == []
