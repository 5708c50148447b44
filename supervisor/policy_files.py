"""Policy files ⇄ the versioned store: import, export and watch a directory.

Import is all or nothing: the directory must pass :func:`check_dir` first. A file whose text
equals the policy's latest stored version is skipped, so importing twice adds nothing.
Export writes every policy's latest (or published) version as ``<id>.md`` with exactly the
stored bytes, so ``import DIR`` then ``export OUT`` gives byte-identical files.
Watch mode turns each saved edit of a file into a new version (invalid edits are logged
with their problems and skipped).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog
from watchfiles import Change, awatch

from supervisor.policy_format import PolicyError, Problem, check_dir, check_references, check_text
from supervisor.policy_store import ImportResult, PolicyStore, Which
from supervisor.suite_record import GateRecord

log = structlog.get_logger("policies.files")


class ImportRefused(PolicyError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


async def import_dir(
    store: PolicyStore,
    directory: str | Path,
    *,
    author: str,
    message: str = "import",
    tests: GateRecord | None = None,
) -> list[ImportResult]:
    """``tests``: the policy test gate the import passed, kept with each new published version."""
    stored = await store.ids()  # a directory may hold only the files that changed
    docs, problems = await asyncio.to_thread(check_dir, directory, stored)
    if problems:
        raise ImportRefused(problems)
    return [
        await store.import_text(
            d.content, author=author, message=message, tests=tests if d.status == "published" else None
        )
        for d in docs
    ]


async def seed_if_empty(store: PolicyStore, directory: str | Path) -> list[ImportResult]:
    """Fill an empty store from ``directory`` (startup). Safe when several instances race."""
    if not await store.is_empty():
        return []
    message = f"seeded from {Path(directory).name}/"
    results = await import_dir(store, directory, author="seed", message=message)
    log.info("policies.seeded", directory=str(directory), saved=[r.id for r in results if r.version])
    return results


async def export_dir(store: PolicyStore, directory: str | Path, which: Which = "latest") -> list[Path]:
    records = await store.records(which)
    return await asyncio.to_thread(_write_all, Path(directory), [(r.id, r.content) for r in records])


def _write_all(out: Path, files: list[tuple[str, str]]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for policy_id, content in files:
        path = out / f"{policy_id}.md"
        path.write_bytes(content.encode("utf-8"))
        written.append(path)
    return written


async def import_file(store: PolicyStore, path: Path, *, author: str) -> ImportResult | None:
    """One edited file into the store; None (logged) when the file is invalid or unreadable."""
    try:
        text = (await asyncio.to_thread(path.read_bytes)).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("policies.watch_unreadable", file=path.name, error=str(exc))
        return None
    doc, problems = check_text(text, path.name)
    if doc is not None and path.stem != doc.id:
        problems.append(Problem(path.name, 1, f"file name does not match id {doc.id!r}"))
    if doc is not None:  # references may name a stored policy or another file of the directory
        siblings = await asyncio.to_thread(lambda: {p.stem for p in path.parent.glob("*.md")})
        problems += check_references([doc], {*await store.ids(), *siblings})
    if doc is None or problems:
        log.warning("policies.watch_invalid", file=path.name, problems=[str(p) for p in problems])
        return None
    result = await store.import_text(text, author=author, message=f"edited {path.name}")
    if result.version is not None:
        log.info("policies.watch_saved", policy=f"{result.id}@{result.version}", file=path.name)
    return result


async def watch_dir(
    store: PolicyStore,
    directory: str | Path,
    *,
    author: str,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Save every added or modified ``*.md`` file of ``directory`` as a new version until ``stop``."""
    root = await asyncio.to_thread(Path(directory).resolve)
    watcher = awatch(root, stop_event=stop, debounce=200, step=50, recursive=False)
    if ready is not None:
        ready.set()
    async for changes in watcher:
        paths = sorted({Path(p) for change, p in changes if change != Change.deleted and p.endswith(".md")})
        for path in paths:
            await import_file(store, path, author=author)
