"""Reading the live transcript stream (``GET /calls/{call_id}/events``, Server-Sent Events)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from tests.support.service import RunningService


async def sse_events(resp: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, Any]]:
    """(event, data) pairs; comment lines come out as ("comment", text)."""
    event, data = "message", ""
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith(":"):
            yield "comment", line[1:].strip()
        elif line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data += line.removeprefix("data: ")
        elif line == "" and data:
            yield event, json.loads(data)
            event, data = "message", ""


def events_url(svc: RunningService, call_id: str) -> str:
    """The stream of ``call_id`` with its view token, as the browser that started it has it."""
    return svc.url + f"/calls/{call_id}/events?token={svc.services.view_token(call_id)}"
