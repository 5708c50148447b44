"""The in-memory engine double: what the call controller's tests drive it with.

It implements :class:`responder.core.engine.Engine` with no wire protocol at all: a test
feeds it the seam's typed events (:meth:`ScriptedEngine.push`, then :meth:`end`) and reads
back every command the controller gave, in order, as :class:`Command` records. The same
controller code runs against it as against Realtime (and, next, GPT-Live); only the
engine's own tests speak wire JSON.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from callrecord.history import HistoryItem
from responder.core.engine import AudioNow, EngineEvent, EngineName, Line, Purpose, Restored


@dataclass(frozen=True)
class Command:
    name: str  # start, reply, answer, stop_speaking, cancel_reply, restore, close
    args: tuple[Any, ...] = ()


@dataclass
class ScriptedEngine:
    name: EngineName = "realtime"
    requests_replies: bool = True
    commands: list[Command] = field(default_factory=list)
    audio: list[str] = field(default_factory=list)
    closed: bool = False
    barge_in_now: Callable[[], None] | None = None
    audio_now: AudioNow | None = None
    _queue: asyncio.Queue[EngineEvent | None] = field(default_factory=asyncio.Queue)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # -- the test's side -------------------------------------------------------------------
    def push(self, *events: EngineEvent) -> None:
        for event in events:
            self._queue.put_nowait(event)

    def end(self) -> None:
        """The session ends (its socket closed) once the events pushed so far are handled."""
        self._queue.put_nowait(None)

    def sent(self, name: str) -> list[tuple[Any, ...]]:
        return [c.args for c in self.commands if c.name == name]

    async def until_sent(self, name: str, count: int = 1, timeout_s: float = 5.0) -> list[tuple[Any, ...]]:
        async with asyncio.timeout(timeout_s):
            while len(self.sent(name)) < count:
                await asyncio.sleep(0.005)
        return self.sent(name)

    # -- the controller's side -------------------------------------------------------------
    async def events(self) -> AsyncIterator[EngineEvent]:
        while True:
            event = await self._queue.get()
            if event is None:
                return
            yield event

    async def start(self) -> None:
        self.commands.append(Command("start"))

    def append_audio_now(self, b64_audio: str) -> bool:
        self.audio.append(b64_audio)
        return True

    async def append_audio(self, b64_audio: str) -> None:
        self.audio.append(b64_audio)

    def watch_barge_in(self, now: Callable[[], None]) -> None:
        self.barge_in_now = now  # a test calls it as the engine would, before pushing the event

    def take_audio(self, now: AudioNow) -> None:
        self.audio_now = now  # a test offers audio as the engine would, instead of an event

    def new_request_id(self) -> str:
        return f"req_{next(self._ids)}"

    async def request_reply(self, request_id: str, purpose: Purpose, line: Line | None = None) -> None:
        self.commands.append(Command("reply", (request_id, purpose, line)))

    async def answer_handover(self, handover_id: str, text: str) -> None:
        self.commands.append(Command("answer", (handover_id, text)))

    async def stop_speaking(self, item_id: str, heard_ms: int) -> None:
        self.commands.append(Command("stop_speaking", (item_id, heard_ms)))

    async def cancel_reply(self, reply_id: str) -> None:
        self.commands.append(Command("cancel_reply", (reply_id,)))

    async def restore(self, items: Sequence[HistoryItem]) -> Restored:
        self.commands.append(Command("restore", (tuple(i.id for i in items),)))
        return Restored(item_ids=frozenset(i.id for i in items))

    async def close(self) -> None:
        self.closed = True
        self.commands.append(Command("close"))
