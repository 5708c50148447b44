"""Following the store: pub/sub refresh of the in-memory library, and watch mode on files."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

from redis.asyncio import Redis

from supervisor.policy_files import watch_dir
from supervisor.policy_store import PolicyStore
from supervisor.policy_sync import start_policies
from tests.support.paths import POLICIES_DIR
from tests.support.waits import wait_until


async def test_a_publish_elsewhere_reaches_the_library_within_a_second(
    redis_url: str, redis: Redis, key_prefix: str
) -> None:
    sync = await start_policies(redis, key_prefix, POLICIES_DIR)
    try:
        assert sync.library.get("returns").version == 3  # type: ignore[union-attr]
        other = PolicyStore(Redis.from_url(redis_url), key_prefix)  # another instance's connection
        current = await other.get("returns")
        draft = current.content.replace("within 30 days of purchase", "within 45 days of purchase")
        saved = await other.save(draft.replace("status: published", "status: draft"), author="ana")
        await asyncio.sleep(0.3)
        assert sync.library.get("returns").version == 3  # type: ignore[union-attr]  # drafts stay out
        await other.publish("returns", saved.version, author="ana")
        published = time.monotonic()
        await wait_until(lambda: sync.library.get("returns").version == 5, 1.0)  # type: ignore[union-attr]
        elapsed = time.monotonic() - published
        hit = sync.library.search("return unused items within how many days", k=1)[0]
        assert hit.label() == "returns@5" and "45 days" in hit.text
        assert elapsed < 1.0
        await other.redis.aclose()
    finally:
        await sync.stop()


async def test_watch_mode_turns_file_edits_into_versions(
    redis: Redis, key_prefix: str, tmp_path: Path
) -> None:
    store = PolicyStore(redis, key_prefix)
    shutil.copy(POLICIES_DIR / "shipping.md", tmp_path / "shipping.md")
    await store.import_text((POLICIES_DIR / "gift-cards.md").read_text(), author="seed", message="seed")
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(watch_dir(store, tmp_path, author="watcher", stop=stop, ready=ready))

    async def shipping_at(version: int) -> bool:
        return await store.latest_version("shipping") == version

    try:
        await ready.wait()
        await asyncio.sleep(0.5)  # the watcher is registered
        text = (tmp_path / "shipping.md").read_text()
        (tmp_path / "shipping.md").write_text(text.replace("$14.95", "$12.95"))
        await wait_until(lambda: shipping_at(2), 5.0, 0.05, what="shipping@2")
        record = await store.get("shipping")
        assert "$12.95" in record.content and record.author == "watcher"
        assert record.message == "edited shipping.md"
        (tmp_path / "shipping.md").write_text(text.replace("owner: ", "owner_typo: "))  # invalid edit
        await asyncio.sleep(1.0)
        assert await store.latest_version("shipping") == 2
        (tmp_path / "shipping.md").write_text(text + "\nSee [[policy:ghost-policy]].\n")  # unknown id
        await asyncio.sleep(1.0)
        assert await store.latest_version("shipping") == 2
        (tmp_path / "shipping.md").write_text(text + "\nSee [[policy:gift-cards]].\n")  # a stored one is fine
        await wait_until(lambda: shipping_at(3), 5.0, 0.05, what="shipping@3")
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
