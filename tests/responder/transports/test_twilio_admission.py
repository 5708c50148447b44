"""Who may hold a line (issue 14, items 1 and 2): a Twilio call takes capacity only once it is
authenticated, a captured webhook cannot be replayed into a new call, and a stream token opens
one stream. Against the real service and a real Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from twilio.request_validator import RequestValidator

from infra.settings import Settings
from responder.runtime.handshake import BURST_FACTOR, GRACE_S
from tests.support.calls import wait_for_status
from tests.support.service import AUTH_TOKEN
from tests.support.twilio import (
    closed_alone,
    closed_with,
    hang_up,
    media_url,
    one_refused,
    open_stream,
    pending,
    post_webhook,
    refused,
    signature,
    start_frame,
    stream_parameters,
    webhook_params,
)
from tests.support.waits import wait_until


async def test_silent_media_sockets_take_no_line(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    """Was: every upgrade of /twilio/media took an admission slot before its token was checked,
    so a few silent sockets filled every line for 10 s each (busy message, 429s, SIP rejects)."""
    settings = make_settings(max_concurrent_calls=1, pending_sockets_per_client=3, stream_handshake_s=1.5)
    svc = await start_service(settings)
    before = {r: refused(r) for r in ("origin", "client_cap", "no_start")}
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as browser:  # Twilio sends no Origin
            await http.ws_connect(media_url(svc), headers={"Origin": "http://evil.example"})
        assert browser.value.status == 403
        silent = [await http.ws_connect(media_url(svc)) for _ in range(3)]  # upgraded, nothing sent
        await asyncio.sleep(GRACE_S + 0.1)  # Twilio would have sent its start by now
        with pytest.raises(aiohttp.WSServerHandshakeError) as over:
            await http.ws_connect(media_url(svc))
        assert over.value.status == 429  # this client's share of unauthenticated sockets is taken
        assert pending() >= 3 and svc.services.admission.active_total == 0
        # the one line is free: a correctly signed webhook gets its stream, and holds the line
        twiml = await post_webhook(http, svc, webhook_params())
        assert stream_parameters(twiml) is not None, "the caller got the busy message"
        assert svc.services.admission.active_total == 1
        # the handshake deadline closes the silent ones (not the generic 10 s)
        codes = await asyncio.gather(*(closed_with(ws, 3.0) for ws in silent))
        assert codes == [1008, 1008, 1008]
    await wait_until(lambda: pending() == 0, 2.0, what="no unauthenticated sockets left")
    assert refused("origin") - before["origin"] == 1
    assert refused("client_cap") - before["client_cap"] == 1
    assert refused("no_start") - before["no_start"] == 3
    async with aiohttp.ClientSession() as http, http.get(svc.url + "/metrics") as resp:
        text = await resp.text()
    assert 'responder_unauthenticated_sockets{transport="twilio"}' in text
    assert 'responder_sockets_refused_total{reason="client_cap",transport="twilio"}' in text


async def test_unsigned_sockets_that_fill_every_place_turn_away_no_signed_stream(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    """Before: silent sockets from a few addresses filled the shared places for unauthenticated
    sockets, and Twilio's own streams were refused (429, 11 of 12 calls). Twilio signs the
    stream's upgrade (X-Twilio-Signature over its URL): such a socket waits in places of its
    own, so only a forged or missing signature meets the full places; its token is still checked."""
    settings = make_settings(pending_sockets_per_client=2, pending_sockets_max=2, stream_handshake_s=3.0)
    svc = await start_service(settings)
    url = media_url(svc)
    signed = {"X-Twilio-Signature": RequestValidator(AUTH_TOKEN).compute_signature(url, {})}
    async with aiohttp.ClientSession() as http:
        squatters = [await http.ws_connect(url) for _ in range(2)]  # every unsigned place
        for headers in ({}, {"X-Twilio-Signature": "Zm9yZ2Vk"}, {"X-Twilio-Signature": "x" * 5000}):
            with pytest.raises(aiohttp.WSServerHandshakeError) as full:
                await http.ws_connect(url, headers=headers)
            assert full.value.status in (429, 400)  # 400: aiohttp's own limit on a header's size
        params = webhook_params()
        stream = stream_parameters(await post_webhook(http, svc, params))
        assert stream is not None
        async with http.ws_connect(url, headers=signed, autoclose=False) as ws:
            await ws.send_str(start_frame(params["CallSid"], stream))
            await wait_for_status(svc, params["CallSid"], {"active"})
            await hang_up(ws, asyncio.create_task(closed_with(ws, 10.0)))
        # the signature is no credential by itself: a signed socket with a made-up token is refused
        async with http.ws_connect(url, headers=signed) as ws:
            forged = {"token": "0" * 64, "expires": "9999999999"}
            await ws.send_str(start_frame(webhook_params()["CallSid"], forged))
            assert await closed_with(ws) == 1008
        for ws in squatters:
            await ws.close()


async def test_a_stream_token_opens_one_stream_and_a_replayed_webhook_starts_nothing(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    """Was: one token opened two streams at once, and replaying the signed webhook byte for byte
    gave new tokens, new streams and model sessions, and reopened the ended call's record."""
    svc = await start_service(make_settings())
    history = svc.services.history
    params = webhook_params()
    call_sid, captured = params["CallSid"], signature(svc, params)
    async with aiohttp.ClientSession() as http:
        stream = stream_parameters(await post_webhook(http, svc, params, captured))
        assert stream is not None
        a, b = [await http.ws_connect(media_url(svc), autoclose=False) for _ in range(2)]
        frames = [start_frame(call_sid, stream) for _ in (a, b)]  # two streams, one token
        await asyncio.gather(a.send_str(frames[0]), b.send_str(frames[1]))
        code, winner = await one_refused([a, b])
        assert code == 1008
        meta = await wait_for_status(svc, call_sid, {"active"})
        await wait_until(lambda: svc.services.live_controllers, 5.0, what="the call's controller")
        live = a if a.close_code is None else b
        await hang_up(live, winner)
        ended = await wait_for_status(svc, call_sid, {"ended"})
        await live.close()
        items = await history.get_items(call_sid)
        # the captured webhook once more: no stream, the caller is hung up on
        replay = await post_webhook(http, svc, params, captured)
        assert stream_parameters(replay) is None and replay.find("./Hangup") is not None
        # and the token of the ended call once more: refused before anything is recorded
        again = await http.ws_connect(media_url(svc))
        await again.send_str(start_frame(call_sid, stream))
        assert await closed_with(again) == 1008
    after = await history.get_meta(call_sid)
    assert after["status"] == "ended" and after["started_at"] == meta["started_at"] == ended["started_at"]
    assert len(await history.get_items(call_sid)) == len(items)
    await wait_until(lambda: svc.services.admission.active_total == 0, 5.0, what="the line is free again")
    assert len(svc.services.reservations) == 0


async def test_a_burst_of_real_streams_from_one_address_is_not_refused(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    """Twilio opens the streams of calls arriving together from one address; each shows its
    token within milliseconds, so a burst up to the burst allowance is taken in full."""
    per_client = 2
    svc = await start_service(make_settings(pending_sockets_per_client=per_client))
    burst = per_client * BURST_FACTOR
    async with aiohttp.ClientSession() as http:
        calls = [webhook_params() for _ in range(burst)]
        streams = [stream_parameters(await post_webhook(http, svc, params)) for params in calls]
        sockets = await asyncio.gather(*(http.ws_connect(media_url(svc)) for _ in calls))  # all at once
        for ws, params, stream in zip(sockets, calls, streams, strict=True):
            assert stream is not None
            await ws.send_str(start_frame(params["CallSid"], stream))
        await asyncio.gather(*(wait_for_status(svc, p["CallSid"], {"active"}) for p in calls))
        for ws in sockets:
            await ws.close()
    await wait_until(lambda: svc.services.admission.active_total == 0, 10.0, what="the calls ended")


async def test_a_stream_that_goes_silent_is_closed_and_its_call_ended(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    """No WebSocket ping on a media stream (a timer reset per frame): a stream that stops
    sending frames, as a half-open connection does, is closed after RESPONDER_STREAM_IDLE_S
    instead, and its call ends; a stream that keeps sending is left alone."""
    svc = await start_service(make_settings(stream_idle_s=0.6))
    quiet, busy = webhook_params(), webhook_params()
    async with aiohttp.ClientSession() as http:
        quiet_ws, busy_ws = [await open_stream(http, svc, params) for params in (quiet, busy)]
        reader = asyncio.create_task(closed_with(quiet_ws, 10.0))
        for _ in range(100):  # 2 s of frames on one of them only
            await busy_ws.send_str('{"event":"mark","streamSid":"MZ1","mark":{"name":"nope"}}')
            await asyncio.sleep(0.02)
        await closed_alone(svc, reader, 1001, quiet["CallSid"], (quiet_ws, busy_ws))
    meta = await svc.services.history.get_meta(quiet["CallSid"])
    assert meta["end_reason"] == "caller_idle"  # not taken for a dropped connection


async def test_a_stream_that_floods_frames_is_closed_and_one_at_a_callers_pace_is_not(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    """Before: a media stream could send tiny frames without end (150,000 in 2 s: every call's
    event loop 85 ms late on average). Now one sending more than RESPONDER_STREAM_MAX_FRAMES_PER_S
    for two seconds running is closed (1008) and its call ended; a stream at a caller's pace,
    and a one-second backlog, are left alone."""
    settings = make_settings(stream_max_frames_per_s=40, stream_idle_s=30.0, simulator_speed=1.0)
    svc = await start_service(settings)
    tiny = '{"event":"media","sequenceNumber":"1","media":{"track":"inbound","chunk":"1",' + (
        '"timestamp":"1","payload":"AAAA"},"streamSid":"MZ1"}'
    )
    flooding, paced = webhook_params(), webhook_params()
    async with aiohttp.ClientSession() as http:
        flood_ws, paced_ws = [await open_stream(http, svc, params) for params in (flooding, paced)]
        reader = asyncio.create_task(closed_with(flood_ws, 10.0))
        for _ in range(100):  # a one-off backlog for the paced one
            await paced_ws.send_str(tiny)
        for _ in range(35):  # 3.5 s: 200 frames a second on one, 20 on the other
            for _ in range(20):
                if not flood_ws.closed:
                    await flood_ws.send_str(tiny)
            await paced_ws.send_str(tiny)
            await paced_ws.send_str(tiny)
            await asyncio.sleep(0.1)
            if reader.done():
                break
        await closed_alone(svc, reader, 1008, flooding["CallSid"], (flood_ws, paced_ws))


async def test_key_presses_before_start_belong_to_no_call(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    """A press on a socket that has not shown its stream token yet is no caller's: it is not
    kept for the call that starts later (one right after start is, issue 14 item 6)."""
    svc = await start_service(make_settings())
    params = webhook_params()
    sid = "MZ" + "f" * 32

    def press(digit: str) -> str:
        return json.dumps({"event": "dtmf", "streamSid": sid, "dtmf": {"digit": digit}})

    async with aiohttp.ClientSession() as http:
        stream = stream_parameters(await post_webhook(http, svc, params))
        assert stream is not None
        async with http.ws_connect(media_url(svc)) as ws:
            await ws.send_str(press("5"))  # before start: unauthenticated
            await ws.send_str(start_frame(params["CallSid"], stream, stream_sid=sid))
            await ws.send_str(press("7"))  # after start, before the session is attached
            await wait_until(lambda: svc.services.live_controllers, 5.0, what="the call's controller")
            await ws.send_str(json.dumps({"event": "stop", "streamSid": sid}))
    await wait_for_status(svc, params["CallSid"], {"ended"})
    items = await svc.services.history.get_items(params["CallSid"])
    assert [i.text for i in items if i.kind == "dtmf"] == ["7"]
