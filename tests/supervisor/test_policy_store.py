"""The versioned policy store on a real Redis: versions, drafts, history, diff, rollback, files."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from redis.asyncio import Redis

from responder.cli.main import main
from supervisor.policy_files import ImportRefused, export_dir, import_dir, seed_if_empty
from supervisor.policy_format import PolicyError
from supervisor.policy_store import PolicyStore, UnknownVersion, VersionConflict, content_hash
from tests.support.paths import POLICIES_DIR

DOC = """---
id: kayaks
title: Kayak Rentals
version: 1
tags: [kayak, rental]
owner: Rentals Desk
effective_date: 2025-05-01
status: draft
---
# Kayak Rentals

## Rental period

Kayaks rent for 24 hours at a time.
"""


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """``main()`` configures logging onto the test's captured stderr: put the old setup back."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def store(redis: Redis, key_prefix: str) -> PolicyStore:
    return PolicyStore(redis, key_prefix)


async def test_every_save_is_a_new_immutable_version(store: PolicyStore) -> None:
    first = await store.save(DOC, author="ana", message="first", base_version=0)
    assert (first.label(), first.status, first.author, first.message) == ("kayaks@1", "draft", "ana", "first")
    assert first.sha256 == content_hash(first.content) and first.content == DOC
    edited = DOC.replace("24 hours", "48 hours")
    second = await store.save(edited, author="ben", message="longer", base_version=1)
    assert second.version == 2 and "version: 2" in second.content and "48 hours" in second.content
    again = await store.get_version("kayaks", 1)
    assert again.content == DOC and again.author == "ana"  # the old text is still there, unchanged
    assert [(i.version, i.author) for i in await store.history("kayaks")] == [(2, "ben"), (1, "ana")]


async def test_drafts_are_not_published_until_published(store: PolicyStore) -> None:
    await store.save(DOC, author="ana", base_version=0)
    assert await store.documents("published") == []
    assert [d.label() for d in await store.documents("latest")] == ["kayaks@1"]
    live = await store.publish("kayaks", 1, author="ana", base_version=1)
    assert (live.version, live.status) == (2, "published") and "status: published" in live.content
    await store.save(DOC.replace("24 hours", "12 hours"), author="ben", base_version=2)  # a new draft on top
    published = await store.documents("published")
    assert [d.label() for d in published] == ["kayaks@2"]
    assert "24 hours" in published[0].sections[-1].text
    assert (await store.get("kayaks", "latest")).version == 3


async def test_stale_base_version_is_a_conflict(store: PolicyStore) -> None:
    await store.save(DOC, author="ana", base_version=0)
    await store.save(DOC.replace("24", "36"), author="ana", base_version=1)
    with pytest.raises(VersionConflict) as info:
        await store.save(DOC.replace("24", "48"), author="ben", base_version=1)
    assert info.value.latest == 2
    with pytest.raises(VersionConflict):
        await store.save(DOC, author="ben", base_version=0)  # "new policy" that already exists


async def test_concurrent_saves_on_one_base_let_exactly_one_win(store: PolicyStore) -> None:
    await store.save(DOC, author="ana", base_version=0)
    results = await asyncio.gather(
        *(store.save(DOC.replace("24", str(30 + i)), author=f"e{i}", base_version=1) for i in range(5)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, VersionConflict) for r in results if isinstance(r, Exception))
    assert await store.latest_version("kayaks") == 2


async def test_diff_and_rollback(store: PolicyStore) -> None:
    await store.save(DOC, author="ana", base_version=0)
    await store.save(DOC.replace("24 hours", "48 hours"), author="ben", base_version=1)
    diff = await store.diff("kayaks", 1, 2)
    assert diff.startswith("--- kayaks@1\n+++ kayaks@2\n")
    assert "-version: 1\n+version: 2\n" in diff and "-Kayaks rent for 24 hours" in diff
    assert "+Kayaks rent for 48 hours" in diff
    back = await store.rollback("kayaks", 1, author="cy", base_version=2)
    assert back.version == 3 and back.message == "rollback to version 1"
    assert back.content == DOC.replace("version: 1", "version: 3")
    assert [i.version for i in await store.history("kayaks")] == [3, 2, 1]
    with pytest.raises(UnknownVersion):
        await store.get_version("kayaks", 9)


async def test_invalid_content_and_ids_are_refused(store: PolicyStore) -> None:
    with pytest.raises(PolicyError, match="version"):
        await store.save(DOC.replace("version: 1", "version: x"), author="ana")
    with pytest.raises(PolicyError, match="does not match"):
        await store.save(DOC, author="ana", policy_id="canoes")
    with pytest.raises(UnknownVersion):
        await store.get_version("../../etc", 1)
    assert await store.is_empty()


async def test_changes_are_announced_on_the_channel(store: PolicyStore, redis: Redis) -> None:
    pubsub = redis.pubsub()
    await pubsub.subscribe(store.channel)
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    await store.save(DOC, author="ana")
    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
    await pubsub.aclose()
    assert message is not None and json.loads(message["data"]) == {"id": "kayaks", "version": 1, "gen": 1}


async def test_import_export_round_trip_is_byte_for_byte(store: PolicyStore, tmp_path: Path) -> None:
    source = tmp_path / "in"
    shutil.copytree(POLICIES_DIR, source, ignore=shutil.ignore_patterns("data"))
    crlf = (source / "gift-cards.md").read_bytes().replace(b"\n", b"\r\n")  # odd bytes survive too
    (source / "gift-cards.md").write_bytes(crlf)
    results = await import_dir(store, source, author="ana")
    assert {r.id: r.version for r in results}["returns"] == 3  # the file's version is kept
    assert all(r.version for r in results)
    assert all(r.version is None for r in await import_dir(store, source, author="ana"))  # no-op twice
    out = tmp_path / "out"
    written = await export_dir(store, out)
    assert sorted(p.name for p in written) == sorted(p.name for p in source.glob("*.md"))
    for path in source.glob("*.md"):
        assert (out / path.name).read_bytes() == path.read_bytes(), path.name


async def test_import_refuses_a_directory_with_problems(store: PolicyStore, tmp_path: Path) -> None:
    (tmp_path / "kayaks.md").write_text(DOC.replace("owner: Rentals Desk\n", ""))
    with pytest.raises(ImportRefused) as info:
        await import_dir(store, tmp_path, author="ana")
    assert [str(p) for p in info.value.problems] == ["kayaks.md:1: owner: Field required"]
    assert await store.is_empty()


async def test_a_directory_of_changed_files_may_refer_to_stored_policies(
    store: PolicyStore, tmp_path: Path
) -> None:
    edited = (POLICIES_DIR / "returns.md").read_text().replace("30 days of purchase", "35 days of purchase")
    (tmp_path / "returns.md").write_text(edited)  # refers to warranty, shipping, membership
    with pytest.raises(ImportRefused) as info:
        await import_dir(store, tmp_path, author="ana")  # an empty store knows none of them
    assert "reference to unknown policy id 'warranty'" in str(info.value)
    await import_dir(store, POLICIES_DIR, author="seed")
    assert [(r.id, r.version) for r in await import_dir(store, tmp_path, author="ana")] == [("returns", 4)]


async def test_seeding_only_fills_an_empty_store_even_when_instances_race(store: PolicyStore) -> None:
    results = await asyncio.gather(seed_if_empty(store, POLICIES_DIR), seed_if_empty(store, POLICIES_DIR))
    saved = [r for batch in results for r in batch if r.version]
    assert len(saved) == len(list(POLICIES_DIR.glob("*.md")))  # each policy stored once, not twice
    assert [i.version for i in await store.history("returns")] == [3]
    await store.save(DOC, author="ana")
    assert await seed_if_empty(store, POLICIES_DIR) == []


def test_cli_import_history_show_export(
    redis_url: str, key_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], restore_logging: None,
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("RESPONDER_REDIS_PREFIX", key_prefix)
    (tmp_path / "kayaks.md").write_text(DOC)
    assert main(["policies", "import", str(tmp_path), "--author", "ana"]) == 0
    assert "kayaks@1 saved" in capsys.readouterr().out
    (tmp_path / "kayaks.md").write_text(DOC.replace("24 hours", "48 hours"))
    assert main(["policies", "import", str(tmp_path), "--author", "ben", "--message", "longer"]) == 0
    assert main(["policies", "history", "kayaks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "kayaks@2 saved" and "ben" in lines[1] and "longer" in lines[1] and "ana" in lines[2]
    assert main(["policies", "show", "kayaks", "--version", "1"]) == 0
    assert capsys.readouterr().out == DOC
    assert main(["policies", "diff", "kayaks", "1", "2"]) == 0
    assert "+Kayaks rent for 48 hours" in capsys.readouterr().out
    assert main(["policies", "export", str(tmp_path / "out")]) == 0
    out_text = (tmp_path / "out" / "kayaks.md").read_text()
    assert out_text == DOC.replace("24 hours", "48 hours").replace("version: 1", "version: 2")
    assert main(["policies", "publish", "kayaks", "2", "--author", "cy", "--base", "1"]) == 1  # stale base
    assert "edited version 1 but the latest is 2" in capsys.readouterr().err
    assert main(["policies", "publish", "kayaks", "2", "--author", "cy", "--base", "2"]) == 0
    assert capsys.readouterr().out == "kayaks@3 published (content of version 2)\n"
    assert main(["policies", "rollback", "kayaks", "1", "--author", "cy"]) == 0
    assert capsys.readouterr().out == "kayaks@4 draft (content of version 1)\n"
    assert main(["policies", "show", "kayaks", "--version", "4"]) == 0
    assert capsys.readouterr().out == DOC.replace("version: 1", "version: 4")
    assert main(["policies", "show", "kayaks"]) == 0  # the published version is still 3
    assert "48 hours" in capsys.readouterr().out
