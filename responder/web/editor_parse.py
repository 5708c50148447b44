"""Editor input parsed off the event loop: the policy checks and the Markdown preview.

Anyone with a viewer token can send text, and parsing it is pure-Python CPU work: the YAML
front matter is bounded before it is parsed (:mod:`supervisor.policy_format`), but
markdown-it still takes ~15 µs per byte of hostile inline syntax (64 KiB of ``![``: ~1 s).
So the parse runs in one worker thread, beside the event loop rather than on it: calls,
``/healthz`` and every other request go on meanwhile. The pool is bounded — one parse at a
time, ``BACKLOG`` more waiting, each answer within ``TIMEOUT_S`` — and beyond that a request
gets 503 with ``Retry-After`` at once (logged as ``editor.parse_refused``). A parse that
overran its deadline still holds its place until it finishes, so the bound holds.

Only documents within ``MAX_DOC_BYTES`` are rendered; a larger one gets its problems
(the size among them) and no HTML.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final, Literal, TypeVar

import structlog
from aiohttp import web
from markdown_it import MarkdownIt

from supervisor.policy_format import MAX_DOC_BYTES, PolicyDocument, Problem, check_text

log = structlog.get_logger("editor")

T = TypeVar("T")
Refusal = Literal["busy", "timeout"]
WORKERS: Final = 1  # one thread: a second would only compete with the event loop for the GIL
BACKLOG: Final = 4
TIMEOUT_S: Final = 5.0
RETRY_AFTER_S: Final = 2

_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")  # raw HTML is escaped


def preview(content: str) -> tuple[PolicyDocument | None, list[Problem], str]:
    """The checks of an unsaved text and its body rendered as HTML (none above the size limit)."""
    doc, problems = check_text(content, "draft")
    if len(content.encode("utf-8", "surrogatepass")) > MAX_DOC_BYTES:
        return doc, problems, ""
    _, _, rest = content.partition("\n---")
    markdown = rest.partition("\n")[2] if content.startswith("---") and rest else content
    return doc, problems, _MARKDOWN.render(markdown)


class ParsePool:
    """A bounded thread pool for CPU-bound parses of untrusted text."""

    def __init__(self, workers: int = WORKERS, backlog: int = BACKLOG, timeout_s: float = TIMEOUT_S) -> None:
        self.workers, self.capacity, self.timeout_s = workers, workers + backlog, timeout_s
        self.in_flight = 0  # running or waiting, including parses whose request gave up
        self._executor: ThreadPoolExecutor | None = None

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` in the pool; 503 when the pool is full or the parse overruns."""
        if self.in_flight >= self.capacity:
            raise self._refuse("busy")
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="editor-parse")
        self.in_flight += 1
        future = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        future.add_done_callback(self._release)  # when the thread is done, not the request
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout_s)
        except TimeoutError:
            raise self._refuse("timeout") from None

    def _release(self, _: object) -> None:
        self.in_flight -= 1

    def _refuse(self, reason: Refusal) -> web.HTTPException:
        log.warning("editor.parse_refused", reason=reason, in_flight=self.in_flight)
        return web.HTTPServiceUnavailable(
            text=json.dumps({"error": "the editor is busy checking other texts: try again"}),
            content_type="application/json",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )


# one per process: the event loop it protects is one per process too
PARSE_POOL: Final = ParsePool()
