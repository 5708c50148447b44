"""Liveness and readiness answers shared by the voice service and the supervisor service."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from redis.asyncio import Redis

from infra.metrics import REDIS_ERRORS


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


def not_ready(reason: str) -> web.Response:
    return web.json_response({"ready": False, "reason": reason}, status=503)


async def readiness(
    redis: Redis, policies_loaded: int, *, draining: bool = False, **extra: Any
) -> web.Response:
    """Ready when Redis answers a ping, policies are loaded and the instance is not draining."""
    try:
        await redis.ping()
    except Exception:
        REDIS_ERRORS.labels(operation="ping").inc()
        return not_ready("redis unreachable")
    if not policies_loaded:
        return not_ready("no policies loaded")
    if draining:
        return not_ready("draining")
    return web.json_response({"ready": True, **extra, "policies": policies_loaded})
