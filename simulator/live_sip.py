"""The SIP side of the GPT-Live double: OpenAI's ``live.transport.incoming`` webhook (a test double).

:func:`send_live_incoming_call` registers a ringing virtual Live session ``live_…`` in the
simulator's state and POSTs the event to the service's webhook URL, signed the Standard
Webhooks way (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``; see
:mod:`simulator.sip`, whose signing it shares), which ``client.webhooks.unwrap(…)`` verifies::

    {"id": "evt_…", "object": "event", "type": "live.transport.incoming", "created_at": …,
     "data": {"session_id": "live_…", "type": "sip", "sip_headers": [{"name", "value"}…],
              "sip_media_security": "srtp"}}

``duplicate``/``concurrent``/``bad_signature`` as for the Realtime sender. The service then
accepts with ``POST /v1/live/sessions/{session_id}/accept`` and attaches the sideband.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import structlog

from simulator.live_calls import add_live_call
from simulator.realtime_items import new_id
from simulator.sip import Delivery, default_sip_headers, new_webhook_secret, sign
from simulator.state import SimulatorState

log = structlog.get_logger("simulator.live_sip")


def live_incoming_event(session_id: str, sip_headers: Sequence[dict[str, str]]) -> dict[str, Any]:
    data = {
        "session_id": session_id,
        "type": "sip",
        "sip_headers": list(sip_headers),
        "sip_media_security": "srtp",
    }
    return {
        "id": new_id("evt"),
        "object": "event",
        "type": "live.transport.incoming",
        "created_at": int(time.time()),
        "data": data,
    }


async def send_live_incoming_call(
    webhook_url: str,
    secret: str,
    *,
    state: SimulatorState | None = None,
    session_id: str | None = None,
    sip_headers: Sequence[dict[str, str]] | None = None,
    caller_number: str | None = None,
    duplicate: int = 1,
    bad_signature: bool = False,
    concurrent: bool = False,
    timeout_s: float = 10.0,
) -> Delivery:
    """Register a ringing Live SIP session in ``state`` (when given) and deliver its webhook
    ``duplicate`` times (all at once with ``concurrent``). ``Delivery.call_id`` is the session id."""
    if duplicate < 1:
        raise ValueError("duplicate must be at least 1")
    number = caller_number or (state.scenario.caller_number if state is not None else "+15555550123")
    live_id = session_id or new_id("live")
    headers_list = list(sip_headers) if sip_headers is not None else default_sip_headers(number, live_id)
    if state is not None:
        add_live_call(state, "sip", session_id=live_id, sip_headers=headers_list)
    event = live_incoming_event(live_id, headers_list)
    body = json.dumps(event)
    delivery = Delivery(call_id=live_id, event=event)
    key = new_webhook_secret() if bad_signature else secret
    headers = {"Content-Type": "application/json", **sign(body, key, webhook_id=new_id("msg"))}

    async def deliver(http: aiohttp.ClientSession, attempt: int) -> tuple[int, str]:
        async with http.post(webhook_url, data=body.encode(), headers=headers) as resp:
            text = await resp.text()
        log.info(
            "simulator.live_sip.webhook_delivered",
            live_session_id=live_id,
            attempt=attempt,
            status=resp.status,
        )
        return resp.status, text

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http:
        if concurrent:
            results = await asyncio.gather(*(deliver(http, n) for n in range(1, duplicate + 1)))
        else:
            results = [await deliver(http, n) for n in range(1, duplicate + 1)]
    for status, text in results:
        delivery.statuses.append(status)
        delivery.bodies.append(text)
    return delivery
