"""A request target in absolute form (``GET http://host/path``, which HTTP/1.1 servers must
accept) with a Twilio signature header: before, the signature check could not parse the URL it
built and the service answered 500; now such a request is simply not Twilio's."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from infra.settings import Settings
from tests.support.service import RunningService


async def _status(svc: RunningService, head: str, body: bytes = b"") -> int:
    host, port = svc.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        return int(status_line.split()[1])
    finally:
        writer.close()


async def test_absolute_form_targets_with_a_signature_are_not_a_500(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc: RunningService = await start_service(make_settings())
    upgrade = (
        f"GET {svc.url}/twilio/media HTTP/1.1\nHost: x\nUpgrade: websocket\nConnection: Upgrade\n"
        "Sec-WebSocket-Version: 13\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nX-Twilio-Signature: abc=\n"
    )
    assert await _status(svc, upgrade) == 101  # an unsigned socket: it waits for its start as any
    form = b"CallSid=CA0123456789abcdef0123456789abcdef"
    webhook = (
        f"POST {svc.url}/twilio/voice HTTP/1.1\nHost: x\nContent-Type: application/x-www-form-urlencoded\n"
        f"Content-Length: {len(form)}\nX-Twilio-Signature: abc=\n"
    )
    assert await _status(svc, webhook, form) == 403
