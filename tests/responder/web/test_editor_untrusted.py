"""Hostile editor input does not stall the event loop (issue 14, item 3).

A read-only viewer token was enough: ``POST /editor/api/preview`` with ``tags: `` and thousands
of ``[`` held the loop for ~1 s in the YAML loader, a Markdown text of ``![`` for ~1.6 s in
markdown-it; ``/healthz`` and every call on the instance waited. The service runs in this
test's event loop and thread, so the thread's CPU time counts what its handlers spend.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest

from infra.settings import Settings
from responder.web.editor_parse import PARSE_POOL
from tests.support.service import RunningService
from tests.support.waits import wait_until

EDITOR, VIEWER = "editor-token-0123456789", "viewer-token-0123456789"
HEAD = "---\nid: demo\ntitle: Demo\nversion: 1\nowner: Test Team\neffective_date: 2025-01-01\n"
YAML_BOMB = HEAD + "tags: " + "[" * (4096 - len(HEAD) - 60) + "\n---\n# Demo\n\ntext\n"
# CPU time of the event loop's thread per request: the parse no longer runs there. (Measured
# in CPU time, not wall time, so that a loaded machine does not make the test flaky.)
LOOP_CPU_S = 0.1  # before the fix: 0.6–1.6 s per hostile request
HEALTHZ_S = 1.0  # /healthz during a burst of eight heavy previews: 4.9 s before the fix


@contextlib.contextmanager
def loop_cpu(spent: list[float]) -> Iterator[None]:
    """Appends the CPU seconds this thread — the event loop's, the server's handlers included —
    spends in the block (the parse pool's worker thread is not counted), less what the garbage
    collector spent in it: a full collection of a long-lived test worker's heap, which happens
    to start on this thread, is not the handlers' work (it once took 0.2 s here)."""
    me, collecting, collected = threading.get_ident(), [0.0], [0.0]

    def gc_time(phase: str, info: dict[str, Any]) -> None:
        if threading.get_ident() != me:
            return
        if phase == "start":
            collecting[0] = time.thread_time()
        else:
            collected[0] += time.thread_time() - collecting[0]

    gc.callbacks.append(gc_time)
    started = time.thread_time()
    try:
        yield
    finally:
        spent.append(time.thread_time() - started - collected[0])
        gc.callbacks.remove(gc_time)


async def post(http: aiohttp.ClientSession, url: str, token: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with http.post(url, json=body, headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, await resp.json()


@pytest.fixture
async def service(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> RunningService:
    return await start_service(make_settings(editor_tokens={"ana": EDITOR}, viewer_tokens={"vic": VIEWER}))


async def test_hostile_previews_and_saves_leave_the_event_loop_free(service: RunningService) -> None:
    url = service.url + "/editor/api"
    markdown_rendered = HEAD + "---\n# Demo\n\n" + "![" * 15000 + "\n"  # 30 KB: rendered (~0.4 s)
    markdown_refused = "![" * 45000  # 90 KB: over the document limit, never rendered
    spent: list[float] = []
    async with aiohttp.ClientSession() as http:
        with loop_cpu(spent):
            status, body = await post(http, url + "/preview", VIEWER, {"content": YAML_BOMB})
        assert status == 200 and body["id"] is None
        assert any("nested too deeply" in p["message"] for p in body["problems"])
        with loop_cpu(spent):
            status, body = await post(http, url + "/preview", VIEWER, {"content": markdown_refused})
        assert status == 200 and body["html"] == ""
        assert any("limit 65536" in p["message"] for p in body["problems"])
        with loop_cpu(spent):
            status, body = await post(http, url + "/preview", VIEWER, {"content": markdown_rendered})
        assert status == 200 and body["html"].startswith("<h1>Demo</h1>")  # rendered, off the loop
        with loop_cpu(spent):
            async with http.put(
                url + "/policies/demo", json={"content": YAML_BOMB, "base_version": 0},
                headers={"Authorization": f"Bearer {EDITOR}"},
            ) as resp:  # fmt: skip
                assert resp.status == 422
        async with http.get(service.url + "/healthz") as resp:
            assert resp.status == 200
    assert max(spent) < LOOP_CPU_S, f"the event loop spent {spent} s of CPU on the requests"


async def test_a_burst_of_previews_is_bounded_and_healthz_answers(service: RunningService) -> None:
    """Eight heavy previews at once: a few are rendered, the rest refused at once (503 with
    Retry-After), and /healthz answers quickly all the while."""
    url = service.url + "/editor/api/preview"
    heavy = {"content": HEAD + "---\n# Demo\n\n" + "![" * 8000 + "\n"}
    spent: list[float] = []
    health: list[float] = []
    async with aiohttp.ClientSession() as http:

        async def one() -> tuple[int, str | None]:
            async with http.post(url, json=heavy, headers={"Authorization": f"Bearer {VIEWER}"}) as resp:
                await resp.read()
                return resp.status, resp.headers.get("Retry-After")

        with loop_cpu(spent):
            burst = asyncio.gather(*(one() for _ in range(8)))
            while not burst.done():
                started = time.perf_counter()
                async with http.get(service.url + "/healthz") as resp:
                    assert resp.status == 200
                health.append(time.perf_counter() - started)
                await asyncio.sleep(0.02)
            results = await burst
        # what the timed-out parses still run: the next test starts with an idle pool
        await wait_until(lambda: PARSE_POOL.in_flight == 0, 20, 0.05, what="the parse pool to drain")
    statuses = sorted(status for status, _ in results)
    assert set(statuses) <= {200, 503} and statuses.count(200) >= 1, statuses
    assert all(retry for status, retry in results if status == 503)
    assert max(health) < HEALTHZ_S, f"/healthz took {max(health):.3f} s"
    assert spent[0] < 3 * LOOP_CPU_S, f"the event loop spent {spent[0]:.3f} s of CPU on the burst"
