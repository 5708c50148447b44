"""Call history that survives a Redis outage: writes are buffered and replayed when it is back.

:class:`BufferedCallHistory` is a :class:`~callrecord.history.CallHistory` whose writes
(``start_call``, ``set_meta``, ``add_item``, ``update_item``, ``add_decision``, with their
pub/sub announcements) are write-through as before, with no added latency, while Redis
answers. When one fails with a connection-type error (:data:`CONNECTION_ERRORS`):

* the write is queued in its call's FIFO instead of raising, Redis is marked down and one
  background flusher per history object (one per process) is started;
* while Redis is known to be down, every write goes straight to the buffer (the call loop
  never waits on a dead server); once a call has queued writes its later writes queue behind
  them, so field patches of items that are still queued replay after them, in order; a
  call's queue is not replayed while a direct write of it (older) still waits for its reply;
* the flusher pings with exponential backoff and, once Redis answers, replays each call's
  queue in order through the ordinary write methods: placement is the same as if there had
  been no outage, every replayed write is announced on the call's channel, and a write that
  had reached Redis before its connection broke is harmless to replay (every write is
  idempotent: items by id, meta fields by value, decisions by their JSON);
* the buffer is bounded (:data:`DEFAULT_LIMIT` writes); what does not fit is dropped and
  logged loudly (``history.buffer_overflow``), never silently.

Reads of a call with buffered writes are served from Redis (when it answers) with the
buffered writes applied on top, or from the buffered writes alone while it is down
(``history.read_local``): the supervisor still sees the newest turns. A call with nothing
buffered cannot be read while Redis is down: :class:`HistoryUnavailable` is raised at once.

Log events: ``history.redis_down``, ``history.buffered`` (a call's first queued write),
``history.flushed`` (writes, calls, outage_ms, dropped), ``history.buffer_overflow``,
``history.flush_failed`` (a write Redis refused: dropped, not retried forever),
``history.unflushed`` (at shutdown).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from callrecord.decisions import Decision
from callrecord.history import DEFAULT_MAX_ITEMS, CallHistory, HistoryItem, decision_item
from callrecord.placement import APPEND, ConversationOrder

log = structlog.get_logger("history")

# refused connections, timeouts, a server still loading its AOF (BusyLoadingError is a
# ConnectionError), a replica during failover; OSError: a socket error redis-py did not wrap
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError, RedisTimeoutError, ReadOnlyError, OSError, TimeoutError,
)  # fmt: skip
DEFAULT_LIMIT = 50_000
MIN_BACKOFF_S = 0.05
MAX_BACKOFF_S = 2.0
OVERFLOW_LOG_EVERY = 1000
SIDE_KINDS = frozenset({"hold_line", "dtmf", "decision", "action"})  # appended, not placed

_DIRECT: ContextVar[bool] = ContextVar("history_direct", default=False)


class HistoryUnavailable(RedisConnectionError):
    """Redis is down and nothing of this call is known locally."""


@dataclass(slots=True)
class _Write:
    seq: int
    call_id: str
    op: str  # the CallHistory method
    args: tuple[Any, ...] = ()
    fields: dict[str, Any] = field(default_factory=dict)

    def __lt__(self, other: _Write) -> bool:
        return self.seq < other.seq


class BufferedCallHistory(CallHistory):
    def __init__(
        self,
        redis: Redis,
        prefix: str = "rt",
        ttl_s: int = 7 * 24 * 3600,
        *,
        limit: int = DEFAULT_LIMIT,
        on_buffered: Callable[[int], None] | None = None,
        max_backoff_s: float = MAX_BACKOFF_S,
        max_items: int = DEFAULT_MAX_ITEMS,
    ) -> None:
        super().__init__(redis, prefix, ttl_s, max_items)
        self.limit = limit
        self.max_backoff_s = max_backoff_s
        self._on_buffered = on_buffered
        self._queues: dict[str, deque[_Write]] = {}  # call id → its writes, oldest first
        self._pending = 0  # queued writes, the one being replayed included
        self._seq = itertools.count()
        self._down_since: float | None = None  # monotonic time Redis was found down
        self._outage_started: float | None = None  # until everything is flushed
        self._flushed = 0  # during the current outage
        self._dropped = 0
        self._flusher: asyncio.Task[None] | None = None
        self._closing = False
        self._flush_lock = asyncio.Lock()  # one replay at a time: the flusher or the last flush
        # call id → its direct writes under way: a call's queue is not replayed while one is
        # (it is older than anything queued; if it fails it must go first, not after)
        self._inflight: dict[str, int] = {}

    @property
    def pending(self) -> int:
        """Writes waiting for Redis."""
        return self._pending

    @property
    def redis_down(self) -> bool:
        return self._down_since is not None

    def buffered_calls(self) -> list[str]:
        return list(self._queues)

    # -- writes ----------------------------------------------------------------------------
    async def start_call(self, call_id: str, **meta: str | float | int) -> None:
        meta.setdefault("started_at", time.time())  # the real start, even when replayed later
        await self._write(call_id, "start_call", fields=meta)

    async def set_meta(self, call_id: str, **fields: str | float | int) -> None:
        await self._write(call_id, "set_meta", fields=fields)

    async def add_item(
        self, call_id: str, item: HistoryItem, previous_item_id: str | None = APPEND
    ) -> bool | None:
        """As :meth:`CallHistory.add_item`; None when the write is buffered (a replayed write
        past the call's item limit is refused then, as it would have been)."""
        result: bool | None = await self._write(call_id, "add_item", (item, previous_item_id or APPEND))
        return result

    async def update_item(self, call_id: str, item_id: str, **fields: Any) -> HistoryItem | None:
        """As :meth:`CallHistory.update_item`; None also when the update is buffered."""
        result: HistoryItem | None = await self._write(call_id, "update_item", (item_id,), fields)
        return result

    async def add_decision(self, call_id: str, decision: Decision) -> None:
        await self._write(call_id, "add_decision", (decision,))

    async def _write(
        self, call_id: str, op: str, args: tuple[Any, ...] = (), fields: dict[str, Any] | None = None
    ) -> Any:
        write = _Write(next(self._seq), call_id, op, args, fields or {})
        if _DIRECT.get():  # inside a write (add_decision → add_item): no second queue
            return await self._apply(write)
        if self._down_since is None and call_id not in self._queues:
            self._inflight[call_id] = self._inflight.get(call_id, 0) + 1
            try:
                return await self._apply(write)
            except CONNECTION_ERRORS as exc:
                self._mark_down(exc)
            finally:  # no await from here to the enqueue: the flusher cannot slip in between
                if self._inflight[call_id] > 1:
                    self._inflight[call_id] -= 1
                else:
                    del self._inflight[call_id]
        self._enqueue(write)
        return None

    async def _apply(self, write: _Write) -> Any:
        token = _DIRECT.set(True)
        try:
            method = getattr(CallHistory, write.op)
            return await method(self, write.call_id, *write.args, **write.fields)
        finally:
            _DIRECT.reset(token)

    def _enqueue(self, write: _Write) -> None:
        if self._pending >= self.limit:
            self._dropped += 1
            if self._dropped == 1 or self._dropped % OVERFLOW_LOG_EVERY == 0:
                log.error(
                    "history.buffer_overflow", call_id=write.call_id, op=write.op,
                    dropped=self._dropped, buffered=self._pending, limit=self.limit,
                )  # fmt: skip
            return
        queue = self._queues.get(write.call_id)
        if queue is None:
            queue = self._queues[write.call_id] = deque()
            log.warning("history.buffered", call_id=write.call_id, op=write.op, buffered=self._pending + 1)
        _insert_in_order(queue, write)
        self._pending += 1
        self._observe()
        self._ensure_flusher()

    def _mark_down(self, exc: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.error("history.redis_down", error=repr(exc), buffered=self._pending)
        if self._outage_started is None:
            self._outage_started = self._down_since
        self._ensure_flusher()

    def _observe(self) -> None:
        if self._on_buffered is not None:
            self._on_buffered(self._pending)

    # -- the flusher -----------------------------------------------------------------------
    def _ensure_flusher(self) -> None:
        if not self._closing and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop(), name="history-flusher")

    async def _flush_loop(self) -> None:
        delay = MIN_BACKOFF_S
        while self._queues or self._down_since is not None:
            if await self._flush_once():
                delay = MIN_BACKOFF_S
                continue
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_backoff_s)
        self._outage_over()

    async def _flush_once(self) -> bool:
        """Ping, then replay every queue; False when Redis is (still) down."""
        async with self._flush_lock:
            return await self._flush_locked()

    async def _flush_locked(self) -> bool:
        try:
            if self._down_since is not None:
                await self.redis.ping()
                self._down_since = None  # calls with nothing queued write directly again
            while self._queues:
                ready = [c for c in self._queues if c not in self._inflight]
                for call_id in ready:
                    await self._flush_call(call_id)
                if not ready:  # only calls with a direct write under way: bounded by its timeout
                    await asyncio.sleep(MIN_BACKOFF_S / 5)
        except CONNECTION_ERRORS as exc:
            self._mark_down(exc)
            return False
        return True

    async def _flush_call(self, call_id: str) -> None:
        queue = self._queues[call_id]
        while queue:
            # left queued until written: a read meanwhile still sees it (replaying a write is
            # idempotent), a failure or cancellation leaves it first in line, and the queue stays
            # registered, so new writes of the call wait behind it
            write = queue[0]
            try:
                await self._apply(write)
            except Exception as exc:
                if isinstance(exc, CONNECTION_ERRORS):
                    raise
                # refused by Redis itself: retrying would never end
                log.error("history.flush_failed", call_id=call_id, op=write.op, error=repr(exc))
            else:
                self._flushed += 1
            _discard(queue, write)
            self._pending -= 1
            self._observe()
        del self._queues[call_id]

    def _outage_over(self) -> None:
        if self._outage_started is None:
            return
        outage_ms = round((time.monotonic() - self._outage_started) * 1000)
        log.info("history.flushed", count=self._flushed, outage_ms=outage_ms, dropped=self._dropped)
        self._outage_started, self._flushed, self._dropped = None, 0, 0

    async def aclose(self, timeout_s: float = 3.0) -> None:
        """Shutdown: one bounded last flush; what could not be written is logged."""
        self._closing = True
        if self._flusher is not None:
            self._flusher.cancel()  # bounded: a cancellation swallowed inside redis-py must not hang
            await asyncio.wait({self._flusher}, timeout=1.0)
            self._flusher = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self._queues or self._down_since is not None:
                    if not await self._flush_once():
                        await asyncio.sleep(MIN_BACKOFF_S * 4)
        if self._queues:
            log.error(
                "history.unflushed", writes=self._pending, calls=len(self._queues),
                call_ids=list(self._queues)[:20], dropped=self._dropped,
            )  # fmt: skip
        else:
            self._outage_over()

    # -- reads -----------------------------------------------------------------------------
    async def _redis_read(self, call_id: str, read: Callable[[], Any]) -> tuple[Any, list[_Write]]:
        """``read()`` from Redis (None when it is down and the call's buffered writes can
        answer), and the call's buffered writes to apply on top of it: those queued when the
        read started as well as now, as the flusher may write some while the read is under
        way (they are then in neither the queue nor, maybe, the read; reapplying is harmless)."""
        before = list(self._queues.get(call_id, ()))
        stored = None
        if self._down_since is None:
            try:
                stored = await read()
                return stored, _merged(before, self._queues.get(call_id, ()))
            except CONNECTION_ERRORS as exc:
                self._mark_down(exc)
        if call_id not in self._queues:
            raise HistoryUnavailable(f"Redis is down and nothing of call {call_id} is buffered")
        return stored, _merged(before, self._queues[call_id])

    async def get_items(self, call_id: str, limit: int | None = None) -> list[HistoryItem]:
        if call_id not in self._queues and self._down_since is None:
            try:
                return await super().get_items(call_id, limit)
            except CONNECTION_ERRORS as exc:
                self._mark_down(exc)
        stored, writes = await self._redis_read(
            call_id, lambda: super(BufferedCallHistory, self).get_items(call_id)
        )
        items = local_view(stored or [], writes)
        if stored is None:
            log.info("history.read_local", call_id=call_id, items=len(items))
        return items[-limit:] if limit else items

    async def get_item(self, call_id: str, item_id: str) -> HistoryItem | None:
        if call_id not in self._queues and self._down_since is None:
            try:
                return await super().get_item(call_id, item_id)
            except CONNECTION_ERRORS as exc:
                self._mark_down(exc)
        return next((i for i in await self.get_items(call_id) if i.id == item_id), None)

    async def get_meta(self, call_id: str) -> dict[str, str]:
        stored, writes = await self._redis_read(
            call_id, lambda: super(BufferedCallHistory, self).get_meta(call_id)
        )
        meta: dict[str, str] = dict(stored or {})
        for write in writes:
            if write.op == "start_call":
                meta.update({"call_id": call_id, "status": "active"})
            if write.op in ("start_call", "set_meta"):
                meta.update({k: str(v) for k, v in write.fields.items()})
        return meta

    async def get_decisions(self, call_id: str) -> list[Decision]:
        stored, writes = await self._redis_read(
            call_id, lambda: super(BufferedCallHistory, self).get_decisions(call_id)
        )
        decisions: list[Decision] = list(stored or [])
        known = {d.decision_id for d in decisions}
        for write in writes:
            if write.op == "add_decision" and write.args[0].decision_id not in known:
                decisions.append(write.args[0])
        return decisions


def _insert_in_order(queue: deque[_Write], write: _Write) -> None:
    """Writes replay in the order they were made, even if an earlier one failed later."""
    if not queue or queue[-1].seq < write.seq:
        queue.append(write)
    else:
        queue.insert(bisect.bisect(list(queue), write), write)


def _merged(before: Iterable[_Write], now: Iterable[_Write]) -> list[_Write]:
    """Two snapshots of a call's queue, as one list in write order."""
    by_seq = {w.seq: w for w in before}
    by_seq.update((w.seq, w) for w in now)
    return [by_seq[seq] for seq in sorted(by_seq)]


def _discard(queue: deque[_Write], write: _Write) -> None:
    """Remove ``write`` (by identity: an earlier write may have been put ahead of it)."""
    if queue and queue[0] is write:
        queue.popleft()
        return
    for n, queued in enumerate(queue):
        if queued is write:
            del queue[n]
            return


def local_view(stored: list[HistoryItem], writes: Iterable[_Write]) -> list[HistoryItem]:
    """The call's items as they will be once ``writes`` reach Redis (the placement rule of
    :mod:`callrecord.placement`, as the Lua script applies it there)."""
    order = ConversationOrder((i.id for i in stored), side=(i.id for i in stored if i.kind in SIDE_KINDS))
    items = {i.id: i for i in stored}
    for write in writes:
        if write.op == "add_item":
            item, prev = write.args
            order.place(item.id, prev)
            items[item.id] = item
        elif write.op == "add_decision":
            item = decision_item(write.args[0])
            order.place(item.id, APPEND)
            items[item.id] = item
        elif write.op == "update_item":
            current = items.get(write.args[0])
            if current is not None:
                items[current.id] = current.model_copy(update=write.fields)
    return [items[i] for i in order.ids]

