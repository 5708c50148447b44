"""Twilio as an outsider sees the service: signed webhooks, the TwiML they get back, media-stream
frames, and the metrics that count media sockets (regression and adversarial tests)."""

from __future__ import annotations

import asyncio
import json
import secrets
import xml.etree.ElementTree as ET

import aiohttp
from twilio.request_validator import RequestValidator

from infra.metrics import REGISTRY
from tests.support.calls import wait_for_status
from tests.support.service import AUTH_TOKEN, RunningService


def webhook_params(call_sid: str | None = None) -> dict[str, str]:
    return {
        "CallSid": call_sid or "CA" + secrets.token_hex(16),
        "AccountSid": "AC" + "2" * 32,
        "From": "+15555550123",
        "To": "+15555550100",
        "CallStatus": "ringing",
        "Direction": "inbound",
    }


def signature(svc: RunningService, params: dict[str, str]) -> str:
    return RequestValidator(AUTH_TOKEN).compute_signature(svc.url + "/twilio/voice", params)


async def post_webhook(
    http: aiohttp.ClientSession, svc: RunningService, params: dict[str, str], sig: str | None = None
) -> ET.Element:
    """POST the signed incoming-call webhook (``sig``: replay a captured signature); the TwiML."""
    headers = {"X-Twilio-Signature": sig or signature(svc, params)}
    async with http.post(svc.url + "/twilio/voice", data=params, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        return ET.fromstring(await resp.text())


def stream_parameters(twiml: ET.Element) -> dict[str, str] | None:
    """The ``<Stream>``'s parameters (callSid, token, expires …); None when no stream is offered."""
    stream = twiml.find("./Connect/Stream")
    if stream is None:
        return None
    return {str(p.get("name")): str(p.get("value")) for p in stream.findall("Parameter")}


def media_url(svc: RunningService) -> str:
    return svc.url.replace("http://", "ws://") + "/twilio/media"


def start_frame(call_sid: str, parameters: dict[str, str], stream_sid: str | None = None) -> str:
    sid = stream_sid or "MZ" + secrets.token_hex(16)
    start = {
        "streamSid": sid, "callSid": call_sid, "accountSid": "AC" + "2" * 32, "tracks": ["inbound"],
        "customParameters": parameters,
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    }  # fmt: skip
    return json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": sid, "start": start})


async def closed_with(ws: aiohttp.ClientWebSocketResponse, timeout_s: float = 5.0) -> int | None:
    """Read until the service closes the socket; its close code."""
    async with asyncio.timeout(timeout_s):
        async for _ in ws:
            pass
    return ws.close_code


async def one_refused(
    sockets: list[aiohttp.ClientWebSocketResponse], timeout_s: float = 5.0
) -> tuple[int, asyncio.Task[int | None]]:
    """Of two sockets started with one token: the close code of the one the service refuses, and
    the still running reader of the other (it goes on reading what it is sent, as Twilio does).

    Open them with ``autoclose=False``: the live one's closing handshake is then the test's to
    answer (:func:`hang_up`), so that the service's test server does not cancel the handler
    that is still recording the call's end (it cancels handlers whose connection is gone)."""
    readers = [asyncio.create_task(closed_with(ws, 30.0)) for ws in sockets]
    done, running = await asyncio.wait(readers, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1 and len(running) == 1, "not exactly one stream was refused"
    code = done.pop().result()
    assert code is not None
    for ws in sockets:
        if ws.close_code is not None:
            await ws.close()
    return code, running.pop()


async def hang_up(ws: aiohttp.ClientWebSocketResponse, reader: asyncio.Task[int | None]) -> None:
    """Twilio's ``stop``; once the service closes the stream, answer its closing handshake."""
    await ws.send_str('{"event": "stop", "sequenceNumber": "99", "stop": {}}')
    await asyncio.wait_for(reader, 10.0)


async def closed_alone(
    svc: RunningService, reader: asyncio.Task[int | None], code: int, call_sid: str,
    sockets: tuple[aiohttp.ClientWebSocketResponse, aiohttp.ClientWebSocketResponse],
) -> None:  # fmt: skip
    """The service closed the first of ``sockets`` (``reader`` reads it) with ``code`` and ended
    its call, while the second one stays open; then both are closed."""
    closed, survivor = sockets
    assert await reader == code
    assert survivor.close_code is None and not survivor.closed
    ended = await wait_for_status(svc, call_sid, {"ended"})
    assert ended["status"] == "ended"
    await survivor.close()
    await closed.close()


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def refused(reason: str) -> float:
    return metric("responder_sockets_refused_total", transport="twilio", reason=reason)


def pending() -> float:
    return metric("responder_unauthenticated_sockets", transport="twilio")


async def open_stream(
    http: aiohttp.ClientSession, svc: RunningService, params: dict[str, str]
) -> aiohttp.ClientWebSocketResponse:
    """A signed webhook for ``params``, then its media stream with a valid ``start``; the
    socket is opened with ``autoclose=False`` (see :func:`one_refused`)."""
    stream = stream_parameters(await post_webhook(http, svc, params))
    assert stream is not None, "no stream offered"
    ws = await http.ws_connect(media_url(svc), autoclose=False)
    await ws.send_str(start_frame(params["CallSid"], stream))
    return ws
