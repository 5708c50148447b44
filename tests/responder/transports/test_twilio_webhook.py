from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import aiohttp
from twilio.request_validator import RequestValidator

from infra.settings import Settings
from responder.transports.twilio.transport import stream_token, twiml_connect, verify_stream_token
from tests.support.calls import VOICE_WEBHOOK_PARAMS as PARAMS
from tests.support.service import AUTH_TOKEN


def test_twiml_connect_stream_with_parameters() -> None:
    xml = twiml_connect("wss://voice.example/twilio/media", {"callSid": "CA1", "token": "abc"})
    root = ET.fromstring(xml)
    stream = root.find("./Connect/Stream")
    assert stream is not None and stream.get("url") == "wss://voice.example/twilio/media"
    params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert params == {"callSid": "CA1", "token": "abc"}


def test_stream_token_binds_call_and_expiry() -> None:
    import time

    exp = int(time.time()) + 60
    tok = stream_token("secret", "CA1", exp)
    assert verify_stream_token("secret", "CA1", str(exp), tok)
    assert not verify_stream_token("secret", "CA2", str(exp), tok)
    assert not verify_stream_token("other", "CA1", str(exp), tok)
    assert not verify_stream_token(
        "secret", "CA1", str(exp - 3600), stream_token("secret", "CA1", exp - 3600)
    )
    assert not verify_stream_token("secret", "CA1", "soon", tok)


async def test_webhook_signature_checked(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc = await start_service(make_settings())
    url = svc.url + "/twilio/voice"
    good = RequestValidator(AUTH_TOKEN).compute_signature(url, PARAMS)
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=PARAMS) as resp:
            assert resp.status == 403
        async with http.post(url, data=PARAMS, headers={"X-Twilio-Signature": "bogus"}) as resp:
            assert resp.status == 403
        tampered = {**PARAMS, "From": "+15550000000"}
        async with http.post(url, data=tampered, headers={"X-Twilio-Signature": good}) as resp:
            assert resp.status == 403
        async with http.post(url, data=PARAMS, headers={"X-Twilio-Signature": good}) as resp:
            assert resp.status == 200
            assert resp.content_type == "application/xml"
            root = ET.fromstring(await resp.text())
        stream = root.find("./Connect/Stream")
        assert stream is not None
        assert stream.get("url") == svc.url.replace("http://", "ws://") + "/twilio/media"
        params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
        assert params["callSid"] == PARAMS["CallSid"] and params["caller"] == PARAMS["From"]
        assert verify_stream_token(AUTH_TOKEN, PARAMS["CallSid"], params["expires"], params["token"])
        # oversize bodies are refused before any parsing
        async with http.post(url, data={"x": "y" * 200_000}, headers={"X-Twilio-Signature": good}) as resp:
            assert resp.status == 413


async def test_webhook_refused_without_configured_token(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc = await start_service(make_settings(twilio_auth_token=None))
    async with aiohttp.ClientSession() as http, http.post(svc.url + "/twilio/voice", data=PARAMS) as resp:
        assert resp.status == 403


async def test_media_stream_with_forged_token_is_closed(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    import json

    svc = await start_service(make_settings())
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(svc.url.replace("http", "ws") + "/twilio/media") as ws,
    ):
        await ws.send_str(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await ws.send_str(
            json.dumps(
                {
                    "event": "start",
                    "sequenceNumber": "1",
                    "streamSid": "MZ1",
                    "start": {
                        "streamSid": "MZ1",
                        "callSid": "CA9",
                        "accountSid": "AC1",
                        "tracks": ["inbound"],
                        "customParameters": {"expires": "9999999999", "token": "forged"},
                        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    },
                }
            )
        )
        msg = await ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1008
    assert await svc.services.history.get_meta("CA9") == {}


async def test_webhook_signed_over_raw_url_and_repeated_fields(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc = await start_service(make_settings())
    url = svc.url + "/twilio/voice?tenant=north%2Fwind"
    form = [*PARAMS.items(), ("StirVerstat", "A"), ("StirVerstat", "B")]
    validator = RequestValidator(AUTH_TOKEN)
    from multidict import MultiDict
    from yarl import URL

    good = validator.compute_signature(url, MultiDict(form))
    raw = URL(url, encoded=True)  # sent exactly as Twilio would, %2F included
    async with aiohttp.ClientSession() as http:
        async with http.post(raw, data=form, headers={"X-Twilio-Signature": good}) as resp:
            assert resp.status == 200
        only_last = validator.compute_signature(url, {**PARAMS, "StirVerstat": "B"})
        async with http.post(raw, data=form, headers={"X-Twilio-Signature": only_last}) as resp:
            assert resp.status == 403


async def test_media_socket_without_start_is_closed(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings], monkeypatch: Any
) -> None:
    from responder.transports import stream

    monkeypatch.setattr(stream, "START_TIMEOUT_S", 0.3)
    svc = await start_service(make_settings())
    ws_url = svc.url.replace("http", "ws") + "/twilio/media"
    nested = "[" * 100_000 + "]" * 100_000
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url, max_msg_size=0) as ws:
        await ws.send_str(nested[:60_000])  # deep nesting within the frame size limit
        await ws.send_str('{"event":"media","media":{"payload":"AAA\\",\\"type\\":\\"session.update"}}')
        msg = await ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1008


async def test_webhook_for_another_account_is_refused(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc = await start_service(make_settings(twilio_account_sid="AC" + "9" * 32))
    url = svc.url + "/twilio/voice"
    signed = RequestValidator(AUTH_TOKEN).compute_signature(url, PARAMS)
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=PARAMS, headers={"X-Twilio-Signature": signed}) as resp,
    ):
        assert resp.status == 403
    mine = {**PARAMS, "AccountSid": "AC" + "9" * 32}
    signed = RequestValidator(AUTH_TOKEN).compute_signature(url, mine)
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=mine, headers={"X-Twilio-Signature": signed}) as resp,
    ):
        assert resp.status == 200


async def test_at_capacity_the_caller_hears_a_busy_message_and_no_stream_is_offered(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    from responder.transports.twilio.transport import BUSY_MESSAGE

    svc = await start_service(make_settings(max_concurrent_calls=0))
    url = svc.url + "/twilio/voice"
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, PARAMS)
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=PARAMS, headers={"X-Twilio-Signature": signature}) as resp,
    ):
        assert resp.status == 200
        root = ET.fromstring(await resp.text())
    assert root.find("./Connect") is None
    say = root.find("./Say")
    assert say is not None and say.text == BUSY_MESSAGE
    assert root.find("./Hangup") is not None
