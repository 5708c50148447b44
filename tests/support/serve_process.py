"""A real ``responder serve`` process, as the SIGTERM tests start it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import aiohttp

from tests.support.paths import REPO
from tests.support.waits import wait_until


async def start_serve(port: int, env: dict[str, str]) -> asyncio.subprocess.Process:
    """``responder serve`` on ``port`` with ``env`` over this process's environment, less any
    OPENAI_/RESPONDER_ setting of the machine's (output discarded: tests read its log file)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "RESPONDER_"))}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "responder.cli.main", "serve", "--port", str(port),
        cwd=REPO, env={**base, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


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
