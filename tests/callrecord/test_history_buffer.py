"""The history write buffer against a real redis-server that each test kills and restarts.

The same writes go through a :class:`BufferedCallHistory` (Redis killed in the middle) and a
plain :class:`CallHistory` (Redis up): once the buffer has flushed, both calls must read back
the same, item for item.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis
from structlog.testing import capture_logs

from callrecord.decisions import Decision
from callrecord.history import APPEND, HEAD, CallHistory, HistoryItem
from callrecord.history_buffer import BufferedCallHistory, HistoryUnavailable
from simulator.scenario import Scenario, Turn
from simulator.state import STATE_KEY, SimulatorState
from simulator.textmodel import add_text_model_routes
from supervisor.agent import build_supervisor
from tests.support.history import drained
from tests.support.redis_process import RedisProcess, redis_client, redis_process  # noqa: F401 (fixtures)

CALL = "CAbuffer"
Write = Callable[[CallHistory], Awaitable[Any]]


def msg(item_id: str, role: str, text: str | None = None, status: str = "completed") -> HistoryItem:
    return HistoryItem(id=item_id, kind="message", role=role, text=text, status=status)  # type: ignore[arg-type]


BEFORE: list[Write] = [
    lambda h: h.start_call(CALL, transport="twilio", caller="+15555550123", started_at=1000.0),
    lambda h: h.add_item(CALL, msg("a0", "assistant", "Thanks for calling."), HEAD),
    lambda h: h.add_item(CALL, msg("u1", "user", "Hi, how are you?"), "a0"),
    lambda h: h.add_item(CALL, msg("a1", "assistant", status="in_progress"), "u1"),
]
HOLD = HistoryItem(id="hold1", kind="hold_line", role="assistant", text="Still checking.")
OUTPUT = HistoryItem(id="out1", kind="function_call_output", call_id="t1", output="60")
DECISION = Decision(call_id=CALL, decision_id="dec_1", context="used tent?", text="Within 60 days.")
DURING: list[Write] = [
    # a field patch of an item that was stored before the outage
    lambda h: h.update_item(CALL, "a1", text="Great, thanks!", status="completed"),
    # a user turn whose transcript arrives later: the patch targets an item that is itself queued
    lambda h: h.add_item(CALL, msg("u2", "user", status="in_progress"), "a1"),
    lambda h: h.add_item(CALL, msg("a2", "assistant", "One moment.", status="in_progress"), "u2"),
    lambda h: h.update_item(CALL, "u2", text="Can I return a used tent?", status="completed"),
    lambda h: h.add_item(CALL, HOLD, APPEND),
    lambda h: h.add_decision(CALL, DECISION),
    lambda h: h.add_item(CALL, OUTPUT, "dec_1"),
    # placed after a2: the side items recorded after it (hold line, decision) are skipped
    lambda h: h.add_item(CALL, msg("late", "assistant", "Late item."), "a2"),
    lambda h: h.update_item(CALL, "a2", status="completed"),
    lambda h: h.set_meta(CALL, status="ended", ended_at=2000.0, end_reason="stop_received"),
]  # fmt: skip


def dump(items: list[HistoryItem]) -> list[dict[str, Any]]:
    return [i.model_dump(exclude={"created_at"}) for i in items]


async def test_outage_writes_replay_in_order_and_are_announced(
    redis_process: RedisProcess,  # noqa: F811
    redis_client: Redis,  # noqa: F811
) -> None:
    buffered = BufferedCallHistory(redis_client, prefix="buf", ttl_s=600)
    reference = CallHistory(redis_client, prefix="ref", ttl_s=600)
    for write in BEFORE:
        await write(buffered)
        await write(reference)
    assert buffered.pending == 0

    redis_process.kill()
    with capture_logs() as logs:
        started = time.monotonic()
        for write in DURING:
            await write(buffered)  # never raises: queued
        elapsed = time.monotonic() - started
        # served locally while Redis is down: the buffered items, patches applied
        local = {i.id: i for i in await buffered.get_items(CALL)}
        assert local["u2"].text == "Can I return a used tent?" and local["u2"].status == "completed"
        assert {"u2", "a2", "hold1", "dec_1", "out1", "late"} <= set(local)
        assert (await buffered.get_item(CALL, "a2")).status == "completed"  # type: ignore[union-attr]
        assert (await buffered.get_meta(CALL))["end_reason"] == "stop_received"
        with pytest.raises(HistoryUnavailable):
            await buffered.get_items("CAnothingbuffered")
    assert buffered.redis_down and buffered.pending == len(DURING)
    assert elapsed < 1.0  # one refused connection, then straight to the buffer
    [first] = [e for e in logs if e["event"] == "history.buffered"]
    assert first["call_id"] == CALL and first["op"] == "update_item"
    assert any(e["event"] == "history.read_local" for e in logs)

    async with buffered._flush_lock:  # hold the replay until the test listens on the channel
        await asyncio.to_thread(redis_process.start)
        listener = Redis.from_url(redis_process.url)
        pubsub = listener.pubsub()
        await pubsub.subscribe(buffered.channel(CALL))
    with capture_logs() as logs:
        await drained(buffered)
    for write in DURING:
        await write(reference)

    assert dump(await buffered.get_items(CALL)) == dump(await reference.get_items(CALL))
    ids = [i.id for i in await buffered.get_items(CALL)]
    assert ids == ["a0", "u1", "a1", "u2", "a2", "hold1", "dec_1", "late", "out1"]
    assert [d.decision_id for d in await buffered.get_decisions(CALL)] == ["dec_1"]
    meta = await buffered.get_meta(CALL)
    assert (meta["status"], meta["end_reason"], meta["started_at"]) == ("ended", "stop_received", "1000.0")
    [flushed] = [e for e in logs if e["event"] == "history.flushed"]
    assert flushed["count"] == len(DURING) and flushed["dropped"] == 0 and flushed["outage_ms"] > 0

    announced: list[str] = []
    async with asyncio.timeout(5):
        while len(announced) < len(DURING):  # one announcement per write
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None:
                announced.append(json.loads(message["data"])["type"])
    assert announced[:2] == ["item.updated", "item.added"] and announced[-1] == "call.meta"
    await pubsub.aclose()
    await listener.aclose()


async def test_overflow_is_logged_and_the_rest_flushed(
    redis_process: RedisProcess,  # noqa: F811
    redis_client: Redis,  # noqa: F811
) -> None:
    sizes: list[int] = []
    history = BufferedCallHistory(redis_client, prefix="ovf", ttl_s=600, limit=5, on_buffered=sizes.append)
    await history.start_call(CALL, transport="twilio")
    redis_process.kill()
    with capture_logs() as logs:
        for n in range(8):
            await history.add_item(CALL, msg(f"i{n}", "user", f"turn {n}"))
    assert history.pending == 5 and max(sizes) == 5
    overflow = [e for e in logs if e["event"] == "history.buffer_overflow"]
    assert overflow[0]["dropped"] == 1 and overflow[0]["limit"] == 5 and overflow[0]["call_id"] == CALL
    with capture_logs() as logs:
        await asyncio.to_thread(redis_process.start)
        await drained(history)
    [flushed] = [e for e in logs if e["event"] == "history.flushed"]
    assert flushed["count"] == 5 and flushed["dropped"] == 3
    assert [i.id for i in await history.get_items(CALL)] == ["i0", "i1", "i2", "i3", "i4"]
    assert sizes[-1] == 0


async def test_replaying_writes_that_already_reached_redis_is_harmless(
    redis_process: RedisProcess,  # noqa: F811
    redis_client: Redis,  # noqa: F811
) -> None:
    """A write whose reply was lost is replayed although Redis applied it: nothing doubles."""
    history = BufferedCallHistory(redis_client, prefix="idem", ttl_s=600)
    for write in BEFORE:
        await write(history)
    await history.add_decision(CALL, DECISION)
    redis_process.kill()
    for write in BEFORE[1:]:  # the same items again, as a replay after a lost reply would send them
        await write(history)
    await history.add_decision(CALL, DECISION)
    await history.update_item(CALL, "a1", text="Patched after the outage.", status="completed")
    await asyncio.to_thread(redis_process.start)
    await drained(history)
    items = await history.get_items(CALL)
    assert [i.id for i in items] == ["a0", "u1", "a1", "dec_1"]
    assert items[2].text == "Patched after the outage."
    assert [d.decision_id for d in await history.get_decisions(CALL)] == ["dec_1"]


async def test_shutdown_flush_and_what_stays_unflushed(
    redis_process: RedisProcess,  # noqa: F811
    redis_client: Redis,  # noqa: F811
) -> None:
    history = BufferedCallHistory(redis_client, prefix="shut", ttl_s=600)
    await history.start_call(CALL, transport="twilio")
    redis_process.kill()
    await history.add_item(CALL, msg("u1", "user", "hello"))
    with capture_logs() as logs:
        await history.aclose(timeout_s=0.5)  # Redis still down: logged, not lost silently
    [unflushed] = [e for e in logs if e["event"] == "history.unflushed"]
    assert unflushed["writes"] == 1 and unflushed["call_ids"] == [CALL]

    await asyncio.to_thread(redis_process.start)
    history = BufferedCallHistory(redis_client, prefix="shut2", ttl_s=600)
    await history.start_call(CALL, transport="twilio")
    await asyncio.to_thread(redis_process.kill)
    await history.add_item(CALL, msg("u1", "user", "hello"))
    await asyncio.to_thread(redis_process.start)
    await history.aclose(timeout_s=5.0)  # the final flush writes it
    assert history.pending == 0
    assert [i.id for i in await CallHistory(redis_client, prefix="shut2").get_items(CALL)] == ["u1"]


@pytest.fixture
async def text_model() -> AsyncIterator[str]:
    app = web.Application()
    app[STATE_KEY] = SimulatorState(
        scenario=Scenario(name="t", turns=[Turn(say="Can I return a used tent?")])
    )
    add_text_model_routes(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/v1"))
    finally:
        await server.close()


async def test_supervisor_decides_from_context_when_history_is_unreadable(
    redis_process: RedisProcess,  # noqa: F811
    redis_client: Redis,  # noqa: F811
    text_model: str,
) -> None:
    """Nothing of the call is buffered and Redis is down: the context alone grounds the answer,
    and the decision is buffered and recorded once Redis is back."""
    history = BufferedCallHistory(redis_client, prefix="sup", ttl_s=600)
    supervisor = build_supervisor(history, api_key="sk-test", model="gpt-test", base_url=text_model)
    redis_process.kill()
    try:
        with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
            decision = await supervisor.decide(CALL, "Can I return a used tent?", user_item_id="u9")
    finally:
        await supervisor.aclose()
    assert decision.outcome == "ok" and "60 days" in decision.text
    assert any(e["event"] == "supervisor.history_unavailable" for e in logs)
    assert history.pending == 1
    await asyncio.to_thread(redis_process.start)
    await drained(history)
    [stored] = await history.get_decisions(CALL)
    assert stored.decision_id == decision.decision_id and stored.text == decision.text
