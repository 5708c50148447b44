"""The SIP side of the simulator: OpenAI's ``realtime.call.incoming`` webhook, as a test double.

:func:`send_incoming_call` registers a ringing virtual call ``rtc_…`` in the simulator's
state and POSTs the event to the service's webhook URL, signed the Standard Webhooks way
that ``client.webhooks.unwrap(body, headers, secret=…)`` of the ``openai`` SDK verifies:

* ``webhook-id`` (``msg_…``), ``webhook-timestamp`` (Unix seconds),
* ``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` keyed with the
  base64-decoded part of ``whsec_…`` (a secret without that prefix is used as raw bytes).

``duplicate=N`` delivers the same event (same ``webhook-id``) N times, as a retrying sender
does (``concurrent=True``: all at once); ``bad_signature=True`` signs with a different key.
The service then accepts the call with ``POST /v1/realtime/calls/{call_id}/accept`` and
attaches the sideband socket.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog

from simulator.realtime_items import new_id
from simulator.state import SimulatorState

log = structlog.get_logger("simulator.sip")

SIP_DOMAIN = "sip.api.openai.com"
TO_URI = "sip:+15555550100@sip.api.openai.com"


def new_webhook_secret() -> str:
    """A fresh ``whsec_…`` secret in the format OpenAI hands out."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode("utf-8")


def sign(body: str, secret: str, *, webhook_id: str, timestamp: int | None = None) -> dict[str, str]:
    """The Standard Webhooks headers for ``body``."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(_key(secret), f"{webhook_id}.{stamp}.{body}".encode(), hashlib.sha256).digest()
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(digest).decode("ascii"),
    }


def default_sip_headers(caller_number: str, call_id: str) -> list[dict[str, str]]:
    return [
        {"name": "From", "value": f"sip:{caller_number}@pstn.example.net"},
        {"name": "To", "value": TO_URI},
        {"name": "Call-ID", "value": f"{call_id}@{SIP_DOMAIN}"},
        {"name": "CSeq", "value": "1 INVITE"},
    ]


def incoming_call_event(call_id: str, sip_headers: Sequence[dict[str, str]]) -> dict[str, Any]:
    return {
        "id": new_id("evt"),
        "object": "event",
        "type": "realtime.call.incoming",
        "created_at": int(time.time()),
        "data": {"call_id": call_id, "sip_headers": list(sip_headers), "sip_media_security": "srtp"},
    }


@dataclass
class Delivery:
    """One incoming-call webhook: the call id, the event, and each delivery's HTTP status."""

    call_id: str
    event: dict[str, Any]
    statuses: list[int] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)


async def send_incoming_call(
    webhook_url: str,
    secret: str,
    *,
    state: SimulatorState | None = None,
    call_id: str | None = None,
    sip_headers: Sequence[dict[str, str]] | None = None,
    caller_number: str | None = None,
    duplicate: int = 1,
    bad_signature: bool = False,
    concurrent: bool = False,
    timeout_s: float = 10.0,
) -> Delivery:
    """Register a ringing SIP call in ``state`` (when given) and deliver its webhook ``duplicate``
    times: one after the other, or all at once with ``concurrent`` (as parallel retries do)."""
    if duplicate < 1:
        raise ValueError("duplicate must be at least 1")
    number = caller_number or (state.scenario.caller_number if state is not None else "+15555550123")
    rtc_id = call_id or new_id("rtc")
    headers_list = list(sip_headers) if sip_headers is not None else default_sip_headers(number, rtc_id)
    if state is not None:
        state.add_call("sip", call_id=rtc_id, sip_headers=headers_list)
    event = incoming_call_event(rtc_id, headers_list)
    body = json.dumps(event)
    delivery = Delivery(call_id=rtc_id, event=event)
    webhook_id = new_id("msg")
    key = new_webhook_secret() if bad_signature else secret
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    headers = {"Content-Type": "application/json", **sign(body, key, webhook_id=webhook_id)}

    async def deliver(http: aiohttp.ClientSession, attempt: int) -> tuple[int, str]:
        async with http.post(webhook_url, data=body.encode(), headers=headers) as resp:
            text = await resp.text()
        log.info("simulator.sip.webhook_delivered", rtc_call_id=rtc_id, attempt=attempt, status=resp.status)
        return resp.status, text

    async with aiohttp.ClientSession(timeout=timeout) as http:
        if concurrent:
            results = await asyncio.gather(*(deliver(http, n) for n in range(1, duplicate + 1)))
        else:
            results = [await deliver(http, n) for n in range(1, duplicate + 1)]
    for status, text in results:
        delivery.statuses.append(status)
        delivery.bodies.append(text)
    return delivery
