"""A Realtime GA connection through the ``openai`` SDK, with a raw-JSON hot path."""

from __future__ import annotations

import itertools
import json
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from openai import AsyncOpenAI
from openai.resources.realtime.realtime import AsyncRealtimeConnection
from websockets.exceptions import ConnectionClosed

log = structlog.get_logger("realtime")

_APPEND_PREFIX = '{"type":"input_audio_buffer.append","audio":"'


class RealtimeConnection:
    """Sends client events (with ids remembered for error reports) and yields server events as dicts."""

    def __init__(self, conn: AsyncRealtimeConnection, call_id: str) -> None:
        self._conn = conn
        self.call_id = call_id
        self._ids = itertools.count(1)
        self._sent: OrderedDict[str, str] = OrderedDict()

    def new_event_id(self) -> str:
        return f"evt_{self.call_id[-8:]}_{next(self._ids)}"

    async def send(self, event: dict[str, Any]) -> str:
        """Send a client event; returns its ``event_id``."""
        event_id = event.setdefault("event_id", self.new_event_id())
        self._sent[event_id] = event["type"]
        while len(self._sent) > 256:
            self._sent.popitem(last=False)
        await self._conn.send_raw(json.dumps(event))
        return event_id

    async def append_audio(self, b64_audio: str) -> None:
        """Hot path: relay caller audio (base64 text, never decoded) to the input buffer."""
        await self._conn.send_raw(_APPEND_PREFIX + b64_audio + '"}')

    def sent_type(self, event_id: str | None) -> str | None:
        """The type of a client event we sent, by id (for logging server errors)."""
        return self._sent.get(event_id) if event_id else None

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Server events as plain dicts until the socket closes. Undecodable frames are logged."""
        while True:
            try:
                raw = await self._conn.recv_bytes()
            except ConnectionClosed:
                return
            try:
                event = json.loads(raw)
            except ValueError:
                log.warning("realtime.frame_invalid", call_id=self.call_id, size=len(raw))
                continue
            if isinstance(event, dict):
                yield event

    async def close(self) -> None:
        await self._conn.close()


def make_client(api_key: str, base_url: str, websocket_base_url: str | None) -> AsyncOpenAI:
    return AsyncOpenAI(api_key=api_key, base_url=base_url, websocket_base_url=websocket_base_url)


@asynccontextmanager
async def open_realtime(
    client: AsyncOpenAI, call_id: str, *, model: str | None = None, sideband_call_id: str | None = None
) -> AsyncIterator[RealtimeConnection]:
    """Open a Realtime WS: a new session for ``model``, or a sideband to ``sideband_call_id``."""
    kwargs: dict[str, Any] = {"call_id": sideband_call_id} if sideband_call_id else {"model": model}
    async with client.realtime.connect(**kwargs) as conn:
        yield RealtimeConnection(conn, call_id)
