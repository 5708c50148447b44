"""A real ``responder serve`` process, as the SIGTERM tests start it."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp
from aiohttp.test_utils import unused_port

from tests.support.paths import REPO
from tests.support.waits import wait_until

BIND_ATTEMPTS = 3


async def start_serve(port: int, env: dict[str, str], stderr: Path) -> asyncio.subprocess.Process:
    """``responder serve`` on ``port`` with ``env`` over this process's environment, less any
    OPENAI_/RESPONDER_ setting of the machine's; its console log goes to ``stderr``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "RESPONDER_"))}
    with stderr.open("ab") as sink:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "responder.cli.main", "serve", "--port", str(port),
            cwd=REPO, env={**base, **env}, stdout=asyncio.subprocess.DEVNULL, stderr=sink,
        )  # fmt: skip


async def start_ready_serve(
    http: aiohttp.ClientSession,
    env: dict[str, str] | Callable[[str], dict[str, str]],
    logs: Path,
    timeout_s: float = 30.0,
) -> tuple[asyncio.subprocess.Process, str]:
    """A ready ``responder serve`` and its URL; each attempt's console log in ``logs`` (``env``
    may be made from the URL, for a setting that names it).
    ``unused_port`` only finds a port free for a moment: under the parallel suite another
    test's connection can take it before the service binds (the service then exits logging
    ``app.bind_failed``), so a new port is tried."""
    for attempt in range(BIND_ATTEMPTS):
        stderr = logs / f"serve-{attempt}.stderr"
        port = unused_port()
        url = f"http://127.0.0.1:{port}"
        proc = await start_serve(port, env(url) if callable(env) else env, stderr)
        if await _ready(http, url, proc, timeout_s):
            return proc, url
        said = await asyncio.to_thread(stderr.read_text, "utf-8", "replace")
        assert "app.bind_failed" in said, f"the service exited during startup:\n{said[-3000:]}"
    raise AssertionError(f"no free port in {BIND_ATTEMPTS} attempts")


async def _ready(
    http: aiohttp.ClientSession, url: str, proc: asyncio.subprocess.Process, timeout_s: float
) -> bool:
    """True once ``url``'s ``/readyz`` answers 200, False if the process exits first."""

    async def ready_or_exited() -> str | None:
        if proc.returncode is not None:
            return "exited"
        try:
            async with http.get(url + "/readyz") as response:
                return "ready" if response.status == 200 else None
        except aiohttp.ClientError:
            return None

    outcome = await wait_until(ready_or_exited, timeout_s, 0.1, what=f"{url}/readyz 200")
    if outcome == "exited":
        await proc.wait()
        return False
    return True
