"""Live-transcript viewers share one Redis subscription and are limited (issue 14, item 4).

One caller opened 120 streams of its own call: each held a connection of the 100-connection
Redis pool (its own pub/sub subscription), 22 got 500, and other calls' writes fell into the
outage buffer. Now an instance subscribes once per watched call and fans announcements out
in-process; viewers are limited per call and per client (429 with a JSON error, logged), and
the replay of past events is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from callrecord.history import HistoryItem
from infra.settings import Settings
from responder.web.live_hub import QUEUE_MAX, FeedLost, LiveHub
from tests.support.service import RunningService
from tests.support.sse import events_url, sse_events
from tests.support.waits import wait_until


@contextlib.asynccontextmanager
async def viewer(
    http: aiohttp.ClientSession, url: str, **headers: str
) -> AsyncIterator[tuple[aiohttp.ClientResponse, AsyncIterator[tuple[str, Any]]]]:
    async with http.get(url, headers=headers) as resp:
        yield resp, sse_events(resp)


async def test_many_viewers_share_one_subscription_and_all_get_each_write(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(transcript_viewers_per_call=40, transcript_viewers_per_client=40)
    svc: RunningService = await start_service(settings)
    history, redis = svc.services.history, svc.services.redis.client
    call_id, other = "ws_crowd0001", "ws_quiet0001"
    await history.start_call(call_id, transport="websocket")
    await history.start_call(other, transport="websocket")
    pool = redis.connection_pool
    in_use = len(pool._in_use_connections)  # the policy sync's subscription, …
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())
        streams = []
        for _ in range(30):
            resp, events = await stack.enter_async_context(viewer(http, events_url(svc, call_id)))
            assert resp.status == 200
            assert (await anext(events))[0] == "call.meta"  # attached: subscribed, replayed
            streams.append(events)
        # Redis sees one subscriber of the call's channel (was: 30), and the pool is not drained
        [(_, subscribers)] = await redis.pubsub_numsub(history.channel(call_id))
        assert subscribers == 1
        # the hub's one connection (was: 30), once the last replay's reads are done
        await wait_until(lambda: len(pool._in_use_connections) <= in_use + 1, 2, 0.02, what="the pool")
        await history.add_item(other, HistoryItem(id="item_o1", kind="message", role="user", text="Hi"))
        await history.add_item(call_id, HistoryItem(id="item_c1", kind="message", role="user", text="Hello"))
        async with asyncio.timeout(10):
            for events in streams:  # every viewer gets the write, and only its own call's
                name, data = await anext(events)
                assert (name, data["item"]["id"]) == ("item.added", "item_c1")
    # the last viewer gone, the instance unsubscribes
    await wait_until(_unsubscribed(redis, history.channel(call_id)), 5, 0.05, what="the unsubscribe")


def _unsubscribed(redis: Any, channel: str) -> Callable[[], Any]:
    async def check() -> bool:
        [(_, subscribers)] = await redis.pubsub_numsub(channel)
        return subscribers == 0

    return check


async def test_viewers_are_limited_per_call_and_per_client(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(
        transcript_viewers_per_call=3, transcript_viewers_per_client=4, trust_forwarded_for=True
    )
    svc: RunningService = await start_service(settings)
    history = svc.services.history
    for call_id in ("ws_limit0001", "ws_limit0002", "ws_limit0003"):
        await history.start_call(call_id, transport="websocket")
    one, two, three = (events_url(svc, c) for c in ("ws_limit0001", "ws_limit0002", "ws_limit0003"))
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())
        open_streams = []
        for url, client in [(one, "203.0.113.1"), (one, "203.0.113.1"), (one, "203.0.113.2")]:
            resp, events = await stack.enter_async_context(viewer(http, url, **{"X-Forwarded-For": client}))
            assert resp.status == 200 and (await anext(events))[0] == "call.meta"
            open_streams.append(resp)
        with capture_logs() as logs:
            async with http.get(one, headers={"X-Forwarded-For": "203.0.113.3"}) as resp:
                assert resp.status == 429  # a fourth viewer of one call, whoever asks
                assert resp.content_type == "application/json" and "error" in await resp.json()
                assert resp.headers["Retry-After"]
            for url in (two, two):  # the first client's third and fourth streams (other calls)
                resp, events = await stack.enter_async_context(
                    viewer(http, url, **{"X-Forwarded-For": "203.0.113.1"})
                )
                assert resp.status == 200 and (await anext(events))[0] == "call.meta"
            async with http.get(three, headers={"X-Forwarded-For": "203.0.113.1"}) as resp:
                assert resp.status == 429  # its fifth
                assert "error" in await resp.json()
            async with http.get(three, headers={"X-Forwarded-For": "203.0.113.9"}) as resp:
                assert resp.status == 200  # someone else may still watch that call
        refused = [e for e in logs if e["event"] == "live.viewer_refused"]
        assert [e["limit"] for e in refused] == ["per_call", "per_client"]
        assert all(e["call_id"] for e in refused)
        # a viewer that leaves frees its place
        open_streams[0].close()

        async def admitted() -> bool:
            async with http.get(one, headers={"X-Forwarded-For": "203.0.113.4"}) as resp:
                return resp.status == 200
        await wait_until(admitted, 5, 0.1, what="the freed place")


async def test_the_replay_is_bounded(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc: RunningService = await start_service(make_settings(transcript_replay_items=5))
    history = svc.services.history
    call_id = "ws_long00001"
    await history.start_call(call_id, transport="websocket")
    for i in range(12):
        await history.add_item(call_id, HistoryItem(id=f"item_{i:02d}", kind="dtmf", role="user", text="1"))
    await history.set_meta(call_id, status="ended")
    async with aiohttp.ClientSession() as http, http.get(events_url(svc, call_id)) as resp:
        async with asyncio.timeout(5):
            seen = [e async for e in sse_events(resp)]
    names = [n for n, _ in seen]
    assert names == ["call.meta", "replay.truncated", *["item.added"] * 5, "call.ended"]
    assert seen[1][1] == {"type": "replay.truncated", "items_shown": 5}
    assert [d["item"]["id"] for n, d in seen if n == "item.added"] == [f"item_{i:02d}" for i in range(7, 12)]


async def test_a_lost_subscription_ends_the_streams_and_the_next_viewer_resubscribes(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    """Announcements sent while the pub/sub connection was down are lost: its viewers' streams
    end without ``call.ended`` (the browser reconnects and replays); the next one is fed again."""
    svc: RunningService = await start_service(make_settings())
    history, redis = svc.services.history, svc.services.redis.client
    call_id = "ws_cut000001"
    await history.start_call(call_id, transport="websocket")
    async with aiohttp.ClientSession() as http:
        async with http.get(events_url(svc, call_id)) as resp:
            events = sse_events(resp)
            assert (await anext(events))[0] == "call.meta"
            await redis.client_kill_filter(_type="pubsub")  # the hub's (and the policy sync's)
            async with asyncio.timeout(10):
                rest = [name async for name, _ in events]
        assert "call.ended" not in rest
        async with http.get(events_url(svc, call_id)) as resp:
            events = sse_events(resp)
            assert (await anext(events))[0] == "call.meta"
            await history.add_item(call_id, HistoryItem(id="item_1", kind="message", role="user", text="Hi"))
            async with asyncio.timeout(10):
                assert (await anext(events))[0] == "item.added"


async def test_a_viewer_that_does_not_read_is_dropped_alone(redis: Any) -> None:
    hub = LiveHub(redis)
    channel = f"test-hub-{id(hub)}"
    try:
        async with hub.watch(channel) as stuck, hub.watch(channel) as reader:
            got: list[bytes] = []
            for i in range(QUEUE_MAX + 10):
                await redis.publish(channel, f"m{i}")
                if (data := await reader.get(2.0)) is not None:
                    got.append(data)
            assert stuck.lost == "too_slow" and reader.lost is None
            assert got == [f"m{i}".encode() for i in range(QUEUE_MAX + 10)]
            with pytest.raises(FeedLost):
                await stuck.get(0.1)
    finally:
        await hub.close()
