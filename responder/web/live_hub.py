"""One Redis pub/sub connection per instance, shared by every live-transcript viewer.

Each viewer used to open its own subscription, so each held a connection of the Redis pool
for as long as it watched: 100 viewers of one call took the whole pool, and the writes of
every other call failed. Now the first viewer of a call subscribes its channel on the hub's
one connection, later viewers of the call share that subscription (reference-counted), and
the last one to leave unsubscribes; a reader task fans each announcement out to the
viewers' in-process queues.

A viewer is attached once Redis confirmed the subscription (SUBSCRIBE is answered on the
pub/sub connection, in order), so that it replays what Redis holds only after every later
write is sure to reach it. A viewer whose queue fills up (it does not read) is dropped; a
lost or re-established subscription (redis-py reconnects and resubscribes by itself, but
announcements may have been lost meanwhile) ends the viewers of the channels concerned. A
dropped viewer's stream ends without ``call.ended``, so the browser reconnects and replays.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

log = structlog.get_logger("live")

QUEUE_MAX: Final = 256  # announcements waiting for one viewer before it counts as stuck
READY_TIMEOUT_S: Final = 3.0  # Redis confirms a subscription within this long
POLL_S: Final = 1.0
CLOSE_TIMEOUT_S: Final = 2.0

LossReason = Literal["too_slow", "subscription_lost", "resubscribed", "shutdown"]


class FeedLost(Exception):
    """The hub can no longer feed this viewer everything in order."""


@dataclass(eq=False)
class Feed:
    """One viewer's announcements of one channel, in order."""

    channel: str
    queue: asyncio.Queue[bytes | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    lost: LossReason | None = None

    async def get(self, timeout_s: float) -> bytes | None:
        """The next announcement; None after ``timeout_s`` of quiet; FeedLost once lost."""
        if self.lost is None:
            try:
                data = await asyncio.wait_for(self.queue.get(), timeout_s)
            except TimeoutError:
                return None
            if data is not None:  # None: lose() woke us
                return data
        raise FeedLost(self.lost)

    def put(self, data: bytes) -> None:
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            self.lose("too_slow")

    def lose(self, reason: LossReason) -> None:
        if self.lost is None:
            self.lost = reason
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(None)  # wakes a viewer waiting on an empty queue


@dataclass(eq=False)
class _Channel:
    feeds: set[Feed] = field(default_factory=set)
    ready: asyncio.Event = field(default_factory=asyncio.Event)


class LiveHub:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._channels: dict[str, _Channel] = {}
        self._pending: dict[str, int] = {}  # SUBSCRIBE commands sent, not yet confirmed
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one command at a time on the pub/sub connection
        self._closing = False

    @property
    def viewers(self) -> int:
        return sum(len(c.feeds) for c in self._channels.values())

    @contextlib.asynccontextmanager
    async def watch(self, channel: str) -> AsyncIterator[Feed]:
        """A feed of ``channel``'s announcements from the moment Redis confirmed the
        subscription; raises TimeoutError or a Redis error when it cannot subscribe."""
        feed = Feed(channel)
        entry = self._channels.get(channel)
        first = entry is None
        if entry is None:
            entry = self._channels[channel] = _Channel()
        entry.feeds.add(feed)
        try:
            if first:
                await self._command("subscribe", channel)
            await asyncio.wait_for(entry.ready.wait(), READY_TIMEOUT_S)
            yield feed
        finally:
            entry.feeds.discard(feed)
            if not entry.feeds and self._channels.get(channel) is entry:
                del self._channels[channel]
                with contextlib.suppress(Exception):  # the reader notices a broken connection
                    await self._command("unsubscribe", channel)

    async def _command(self, command: Literal["subscribe", "unsubscribe"], channel: str) -> None:
        async with self._lock:
            if self._closing:
                raise ConnectionError("the live hub is closing")
            if self._pubsub is None:
                self._pubsub = self.redis.pubsub()
            if command == "subscribe":
                self._pending[channel] = self._pending.get(channel, 0) + 1
                try:
                    await self._pubsub.subscribe(channel)
                except BaseException:
                    self._pending[channel] -= 1
                    raise
            else:
                await self._pubsub.unsubscribe(channel)
            if self._reader is None:  # the connection exists once a command went out
                self._reader = asyncio.create_task(self._read(self._pubsub), name="live-hub")

    async def _read(self, pubsub: PubSub) -> None:
        try:
            while not self._closing:
                message = await pubsub.get_message(timeout=POLL_S)
                if message is not None:
                    self._dispatch(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("live.subscription_lost", error=type(exc).__name__, viewers=self.viewers)
        finally:
            await self._reset(pubsub, "shutdown" if self._closing else "subscription_lost")

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind, channel = message["type"], _text(message.get("channel"))
        entry = self._channels.get(channel)
        if kind == "message":
            for feed in list(entry.feeds if entry is not None else ()):
                feed.put(message["data"])
                if feed.lost == "too_slow":
                    entry.feeds.discard(feed)  # type: ignore[union-attr]
                    log.warning("live.viewer_too_slow", channel=channel, queued=QUEUE_MAX)
        elif kind == "subscribe":
            pending = self._pending.get(channel, 0)
            if pending > 1:
                self._pending[channel] = pending - 1
                return
            self._pending.pop(channel, None)
            if entry is None:
                return
            if pending == 0 and entry.ready.is_set():  # redis-py reconnected and resubscribed:
                for feed in list(entry.feeds):  # what was announced meanwhile is gone
                    feed.lose("resubscribed")
            entry.ready.set()

    async def _reset(self, pubsub: PubSub, reason: LossReason) -> None:
        """The connection is gone: every viewer is told, the next one starts afresh."""
        for entry in self._channels.values():
            for feed in entry.feeds:
                feed.lose(reason)
        self._channels.clear()
        self._pending.clear()
        if self._pubsub is pubsub:
            self._pubsub, self._reader = None, None
        with contextlib.suppress(Exception):  # bounded: a torn-down read can leave it hanging
            await asyncio.wait_for(pubsub.aclose(), CLOSE_TIMEOUT_S)

    async def close(self) -> None:
        """Shutdown: end every feed and the reader, close the connection."""
        self._closing = True
        reader, pubsub = self._reader, self._pubsub
        if reader is not None:
            reader.cancel()
            await asyncio.wait({reader}, timeout=CLOSE_TIMEOUT_S)
        elif pubsub is not None:
            await self._reset(pubsub, "shutdown")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")
