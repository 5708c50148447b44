"""An engine's WebSocket in memory: raw server events in (pushed by the test), client events
recorded. The engine's own tests (Realtime, GPT-Live) speak wire JSON through it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any


class ScriptedSocket:
    def __init__(self, events: list[dict[str, Any]] | None = None, *, stay_open: bool = False) -> None:
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        for event in events or []:
            self._queue.put_nowait(event)
        if not stay_open:
            self._queue.put_nowait(None)
        self.sent: list[dict[str, Any]] = []
        self.audio: list[str] = []
        self._types: dict[str, str] = {}
        self.closed = False
        self.watches: dict[bytes, Callable[[bytes], bool]] = {}  # a test calls them as the model socket would

    def push(self, *events: dict[str, Any]) -> None:
        for event in events:
            self._queue.put_nowait(event)

    def end(self) -> None:
        self._queue.put_nowait(None)

    def sent_of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.sent if e["type"] == kind]

    def new_event_id(self) -> str:
        return f"evt_{len(self.sent) + 1}"

    async def send(self, event: Mapping[str, object]) -> str:
        event_id = str(event.get("event_id") or self.new_event_id())
        self._types[event_id] = str(event["type"])
        self.sent.append({**event, "event_id": event_id})
        return event_id

    def append_audio_now(self, b64_audio: str) -> bool:
        self.audio.append(b64_audio)
        return True

    async def append_audio(self, b64_audio: str) -> None:
        self.audio.append(b64_audio)

    def sent_type(self, event_id: str | None) -> str | None:
        return self._types.get(event_id) if event_id else None

    def watch(self, marker: bytes, seen: Callable[[bytes], bool]) -> bool:
        self.watches.pop(marker, None)  # as ModelSocket.watch: watched again, it is the last one
        self.watches[marker] = seen
        return True

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            event = await self._queue.get()
            if event is None:
                return
            yield event

    async def close(self) -> None:
        self.closed = True
