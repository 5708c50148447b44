"""A real ``responder serve`` process, as the SIGTERM tests start it."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.support.waits import wait_until


async def wait_ready(
    http: aiohttp.ClientSession, url: str, proc: asyncio.subprocess.Process, timeout_s: float = 30.0
) -> None:
    """Until ``url``'s ``/readyz`` answers 200; fails at once if the process exits first."""

    async def ready() -> bool:
        assert proc.returncode is None, "the service exited during startup"
        try:
            async with http.get(url + "/readyz") as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    await wait_until(ready, timeout_s, 0.1, what=f"{url}/readyz 200")
