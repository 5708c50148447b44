"""The history write buffer while its flusher is replaying: live writes, reads and a second
outage in the middle of the replay, against a real redis-server the tests kill and restart.

Each test lets a few hundred writes queue during an outage, brings Redis back, and acts once
the flusher is visibly mid-replay (Redis answering, writes still pending).
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from structlog.testing import capture_logs

from callrecord.history import CallHistory, HistoryItem
from callrecord.history_buffer import BufferedCallHistory, _Write
from tests.support.history import drained
from tests.support.redis_process import RedisProcess, redis_client, redis_process  # noqa: F401 (fixtures)
from tests.support.waits import wait_until

CALL = "CAraces"
QUEUED = 400


def turn(n: int, text: str | None = None) -> HistoryItem:
    return HistoryItem(id=f"i{n:04d}", kind="message", role="user", text=text or f"turn {n}")


async def queue_during_outage(history: BufferedCallHistory, redis_process: RedisProcess) -> None:  # noqa: F811
    await history.start_call(CALL, transport="twilio")
    redis_process.kill()
    for n in range(QUEUED):
        await history.add_item(CALL, turn(n))  # appended: the order is the order of the writes
    assert history.pending == QUEUED


async def mid_replay(history: BufferedCallHistory, below: int, timeout_s: float = 20.0) -> None:
    """Until the flusher has replayed some writes (Redis up again) but fewer than ``below``."""
    await wait_until(lambda: not (history.redis_down or history.pending > below), timeout_s, 0)
    assert 0 < history.pending <= below, "the replay finished before the test could act"


async def stored_ids(redis_process: RedisProcess, prefix: str) -> list[str]:  # noqa: F811
    reader = Redis.from_url(redis_process.url)
    try:
        return [i.id for i in await CallHistory(reader, prefix=prefix).get_items(CALL)]
    finally:
        await reader.aclose()


async def test_live_writes_during_the_replay_queue_behind_it(
    redis_process: RedisProcess,  # noqa: F811
    redis_client: Redis,  # noqa: F811
) -> None:
    """A call whose writes are being replayed keeps queueing: a patch of an item that is still
    queued must not reach Redis before the item does (it would patch nothing, and be lost)."""
    history = BufferedCallHistory(redis_client, prefix="live", ttl_s=600)
    await queue_during_outage(history, redis_process)
    await asyncio.to_thread(redis_process.start)
    await mid_replay(history, below=QUEUED - 20)
    last = QUEUED - 1
    await history.update_item(CALL, turn(last).id, text="patched while replaying")
    await history.add_item(CALL, turn(QUEUED))
    await drained(history)
    items = await CallHistory(redis_client, prefix="live").get_items(CALL)
    assert [i.id for i in items] == [turn(n).id for n in range(QUEUED + 1)]
    assert items[last].text == "patched while replaying"


async def test_reads_during_the_replay_miss_no_item(
    redis_process: RedisProcess,  # noqa: F811
    redis_client: Redis,  # noqa: F811
) -> None:
    """The write being replayed is neither in the queue nor (yet) in Redis for a moment: a read
    of the call then must still see it (the supervisor must not lose the caller's last turn)."""
    history = BufferedCallHistory(redis_client, prefix="read", ttl_s=600)
    await queue_during_outage(history, redis_process)
    expected = [turn(n).id for n in range(QUEUED)]
    await asyncio.to_thread(redis_process.start)
    reads = 0
    async with asyncio.timeout(30):
        while history.pending or history.redis_down:
            ids = [i.id for i in await history.get_items(CALL)]
            assert ids == expected, f"read {reads}: {len(ids)} items, missing {set(expected) - set(ids)}"
            reads += 1
            await asyncio.sleep(0)  # a local read (Redis not seen back yet) never yields
    assert reads > 10  # the reads really overlapped the replay


async def test_redis_dying_again_mid_replay_loses_nothing(
    redis_process: RedisProcess,  # noqa: F811
    redis_client: Redis,  # noqa: F811
) -> None:
    """The write in flight when Redis dies again goes back to the head of its call's queue,
    ahead of the live writes made since, and is replayed once Redis is back."""
    history = BufferedCallHistory(redis_client, prefix="again", ttl_s=600)
    await queue_during_outage(history, redis_process)
    with capture_logs() as logs:
        await asyncio.to_thread(redis_process.start)
        await mid_replay(history, below=QUEUED - 20)
        redis_process.kill()  # on the loop's thread: the flusher is mid-write when it returns
        for n in range(QUEUED, QUEUED + 10):  # queued behind the interrupted replay
            await history.add_item(CALL, turn(n))
        await asyncio.sleep(0.2)
        assert history.redis_down and history.pending > 10
        await asyncio.to_thread(redis_process.start)
        await drained(history)
    assert await stored_ids(redis_process, "again") == [turn(n).id for n in range(QUEUED + 10)]
    [flushed] = [e for e in logs if e["event"] == "history.flushed"]
    assert flushed["count"] == QUEUED + 10 and flushed["dropped"] == 0  # each write once


class SlowFirstWrite(BufferedCallHistory):
    """Holds the direct write of item ``slow`` until released, then fails it as a lost reply
    (it never reached Redis): a write stuck on a dead socket while the rest of the call goes on."""

    def __init__(self, redis: Redis, **kwargs: Any) -> None:
        super().__init__(redis, **kwargs)
        self.release = asyncio.Event()
        self.held = asyncio.Event()

    async def _apply(self, write: _Write) -> Any:
        if write.op == "add_item" and write.args[0].id == "slow" and not self.held.is_set():
            self.held.set()
            await self.release.wait()
            raise RedisConnectionError("connection lost before the reply")
        return await super()._apply(write)


async def test_a_direct_write_under_way_keeps_its_place_ahead_of_the_replay(
    redis_process: RedisProcess,  # noqa: F811
    redis_client: Redis,  # noqa: F811
) -> None:
    """A write was sent before Redis died and is still waiting for its reply when later writes
    of the same call, queued meanwhile, could be replayed: they wait for it, so that when it
    fails it is replayed first (a patch of its item must not be replayed before the item)."""
    history = SlowFirstWrite(redis_client, prefix="inflight", ttl_s=600)
    await history.start_call(CALL, transport="twilio")
    slow = asyncio.create_task(history.add_item(CALL, turn(0).model_copy(update={"id": "slow"})))
    await history.held.wait()
    redis_process.kill()
    await history.add_item("CAother", turn(1))  # refused: Redis is known down from here on
    await history.update_item(CALL, "slow", text="patched")  # queued behind the slow write
    assert history.redis_down and history.buffered_calls() == ["CAother", CALL]
    await asyncio.to_thread(redis_process.start)
    async with asyncio.timeout(20):  # the replay ran for the other call, not for this one
        while history.redis_down or "CAother" in history.buffered_calls():
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    assert history.buffered_calls() == [CALL] and history.pending == 1
    history.release.set()
    assert await slow is None  # failed, queued (ahead of the patch)
    await drained(history)
    [item] = await CallHistory(redis_client, prefix="inflight").get_items(CALL)
    assert (item.id, item.text) == ("slow", "patched")
