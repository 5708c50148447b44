"""The production Redis client options (short socket timeouts, one retry) against real servers:
every URL scheme gets a client that works, and pub/sub readers that sit idle for longer than
the 1 s socket timeout (the live transcript stream, the policy sync listener) do not fail."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from infra.redis_server import SOCKET_TIMEOUT_S, client_from_url, connect_redis
from responder.web.live import POLL_S
from supervisor.policies import PolicyLibrary
from supervisor.policy_store import PolicyStore
from supervisor.policy_sync import PolicySync

IDLE_S = SOCKET_TIMEOUT_S * 2.5


async def test_unix_socket_urls_whatever_their_case(tmp_path: Path) -> None:
    embedded = await connect_redis(None, tmp_path / "redis")
    try:
        path = embedded.url.removeprefix("unix://")
        for url in (f"unix://{path}", f"UNIX://{path}", f"Unix://{path}?db=0"):
            handle = await connect_redis(url, tmp_path / "unused")
            try:
                assert await handle.client.ping() and not handle.embedded
            finally:
                await handle.client.aclose()
    finally:
        await embedded.close()


@pytest.mark.parametrize("timeout_s", [POLL_S, 5.0])  # live.py's poll, PolicySync's default poll
async def test_idle_pubsub_reads_outlast_the_socket_timeout(redis_url: str, timeout_s: float) -> None:
    client = client_from_url(redis_url)  # the suite's Redis: TCP (REDIS_URL) or unix (embedded)
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe("opts:idle")
        started = time.monotonic()
        with pytest.raises(TimeoutError):  # nothing arrives: the read only ends by our timeout
            async with asyncio.timeout(IDLE_S):
                while True:
                    assert await pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout_s) is None
        assert time.monotonic() - started >= IDLE_S
        await client.publish("opts:idle", "after the silence")  # the connection still works
        async with asyncio.timeout(2):
            while (message := await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)) is None:
                pass
        assert message["data"] == b"after the silence"
    finally:
        await pubsub.aclose()
        await client.aclose()


async def test_idle_policy_sync_listener_keeps_its_subscription(redis_url: str, key_prefix: str) -> None:
    client = client_from_url(redis_url)  # the suite's Redis: TCP (REDIS_URL) or unix (embedded)
    sync = PolicySync(PolicyStore(client, key_prefix), PolicyLibrary([]))
    try:
        with capture_logs() as logs:
            sync.start()
            await asyncio.sleep(IDLE_S)
        assert not [e for e in logs if e["event"] == "policies.sync_failed"]
        assert sync._task is not None and not sync._task.done()
    finally:
        await sync.stop()
        await client.aclose()
