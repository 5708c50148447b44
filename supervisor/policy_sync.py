"""Keep an in-memory :class:`PolicyLibrary` in step with the store, across instances.

Every store change is published on ``<prefix>:policies:changed``; :class:`PolicySync`
listens and reloads the published set, then swaps the library's index in one assignment.
A slow poll of the store's change counter covers a missed message (a reconnect).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import structlog
from redis.asyncio import Redis

from supervisor.policies import PolicyLibrary
from supervisor.policy_files import seed_if_empty
from supervisor.policy_store import PolicyStore
from supervisor.policy_tests.store import SUITE_DIR, SuiteStore

log = structlog.get_logger("policies.sync")


class PolicySync:
    def __init__(self, store: PolicyStore, library: PolicyLibrary, *, poll_s: float = 5.0) -> None:
        self.store = store
        self.library = library
        self.poll_s = poll_s
        self.generation = -1
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._lock = asyncio.Lock()

    async def refresh(self) -> bool:
        """Reload the published set when the store changed since the last load."""
        async with self._lock:
            gen = await self.store.generation()
            if gen == self.generation:
                return False
            docs = await self.store.documents("published")
            self.library.replace(docs)
            self.generation = gen
            log.info("policies.refreshed", gen=gen, policies=self.library.labels())
            return True

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="policies-sync")

    async def stop(self) -> None:
        self._stopping = True  # ends the loops even if a read swallowed the cancellation
        if self._task is not None:
            self._task.cancel()
            # bounded: a pub/sub connection torn down mid-read can keep the task from finishing
            await asyncio.wait({self._task}, timeout=2.0)
            self._task = None

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("policies.sync_failed")
                await asyncio.sleep(1.0)

    async def _listen(self) -> None:
        pubsub = self.store.redis.pubsub()
        await pubsub.subscribe(self.store.channel)
        try:
            await self.refresh()  # anything missed while (re)subscribing
            while not self._stopping:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=self.poll_s)
                if message is not None:
                    # take what already arrived (an import of many files) before one reload
                    while await pubsub.get_message(ignore_subscribe_messages=True, timeout=0):
                        pass
                await self.refresh()
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()


async def start_policies(redis: Redis, prefix: str, seed_dir: str | Path) -> PolicySync:
    """Startup: seed an empty store from ``seed_dir`` (and its test suites from ``seed_dir/tests``),
    load the published set, follow changes."""
    store = PolicyStore(redis, prefix)
    await seed_if_empty(store, seed_dir)
    await SuiteStore(redis, prefix).seed_if_empty(Path(seed_dir) / SUITE_DIR)
    sync = PolicySync(store, PolicyLibrary([]))
    await sync.refresh()
    sync.start()
    return sync
