from __future__ import annotations

from pathlib import Path

from infra.redis_server import _redact, connect_redis


async def test_embedded_redis_is_a_real_server_that_keeps_its_data(tmp_path: Path) -> None:
    first = await connect_redis(None, tmp_path / "redis")
    assert first.embedded and first.url.startswith("unix://")
    info = await first.client.info("server")
    assert info["redis_version"]  # a real redis-server answered
    await first.client.set("persisted", "yes")
    await first.close()
    second = await connect_redis(None, tmp_path / "redis")
    try:
        assert await second.client.get("persisted") == b"yes"
    finally:
        await second.close()


def test_redis_password_never_logged() -> None:
    assert _redact("redis://:s3cret@cache:6379/0") == "redis://***@cache:6379/0"
    assert _redact("redis://cache:6379") == "redis://cache:6379"
