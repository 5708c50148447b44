"""Policy test suites, versioned in Redis beside the policies they test.

A suite file (``<name>.yaml``, see :mod:`supervisor.policy_tests.cases`) is stored like a
policy: every save is a new immutable version with the exact text, author, time, message and
SHA-256, and a save states the version it edited (a stale one raises
:class:`~supervisor.policy_store.VersionConflict`; a Lua script checks and writes atomically).
Suites have no draft/published status: the latest version of every suite *is* the suite, and
it does not reach callers. A publish gate records the versions it ran, so a policy version
names the suite it passed.

Redis layout, in the policies' hash tag (``P = <prefix>:{policies}``): ``P:suites:latest``
(hash name → latest version) and ``P:suites:doc:<name>`` (hash version → JSON record).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from pydantic import BaseModel
from redis.asyncio import Redis

from supervisor.policy_format import ID_RE, PolicyError, Problem
from supervisor.policy_store import VersionConflict, content_hash
from supervisor.policy_tests.cases import SuiteCase, check_suites, read_suite_dir

log = structlog.get_logger("policy_tests.store")

SUITE_DIR = "tests"  # suites live in <policies dir>/tests/

_SAVE = """
local latest = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if latest ~= tonumber(ARGV[2]) then return {-1, latest} end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return {tonumber(ARGV[3]), latest}
"""


class SuiteRefused(PolicyError):
    """Suite files with problems (``file:line: message``)."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class SuiteInfo(BaseModel):
    name: str  # the file's stem: returns.yaml → returns
    version: int
    author: str
    message: str
    created_at: float
    sha256: str
    cases: int

    @property
    def file(self) -> str:
        return f"{self.name}.yaml"

    def label(self) -> str:
        return f"{self.name}@{self.version}"


class SuiteRecord(SuiteInfo):
    content: str

    def info(self) -> SuiteInfo:
        return SuiteInfo(**self.model_dump(exclude={"content"}))


@dataclass(frozen=True)
class SuiteImport:
    name: str
    version: int | None  # None: the store already held exactly this text


def suite_name(file: str) -> str:
    return Path(file).stem


class SuiteStore:
    def __init__(self, redis: Redis, prefix: str = "rt") -> None:
        self.redis = redis
        base = f"{prefix}:{{policies}}"
        self._latest, self._doc_prefix = f"{base}:suites:latest", f"{base}:suites:doc:"
        self._policies_latest = f"{base}:latest"  # the policy store's, for the ids cases name
        self._save_script = redis.register_script(_SAVE)

    # -- reading ------------------------------------------------------------------------------
    async def is_empty(self) -> bool:
        return not await self.redis.hlen(self._latest)

    async def versions(self) -> dict[str, int]:
        """Suite file name → its latest version (what a gate records)."""
        raw = await self.redis.hgetall(self._latest)
        return {f"{_s(k)}.yaml": int(v) for k, v in sorted(raw.items())}

    async def get(self, name: str, version: int | None = None) -> SuiteRecord:
        _check_name(name)
        if version is None:
            latest = await self.redis.hget(self._latest, name)
            if latest is None:
                raise KeyError(f"no suite {name!r}")
            version = int(latest)
        raw = await self.redis.hget(self._doc_prefix + name, str(version))
        if raw is None:
            raise KeyError(f"{name}@{version} does not exist")
        return SuiteRecord.model_validate_json(raw)

    async def records(self) -> list[SuiteRecord]:
        pointers = {_s(k): _s(v) for k, v in (await self.redis.hgetall(self._latest)).items()}
        pipe = self.redis.pipeline(transaction=False)
        for name in sorted(pointers):
            pipe.hget(self._doc_prefix + name, pointers[name])
        return [SuiteRecord.model_validate_json(r) for r in await pipe.execute() if r is not None]

    async def texts(self) -> dict[str, str]:
        return {r.file: r.content for r in await self.records()}

    async def history(self, name: str) -> list[SuiteInfo]:
        _check_name(name)
        raws = await self.redis.hvals(self._doc_prefix + name)
        return sorted((SuiteRecord.model_validate_json(r).info() for r in raws), key=lambda i: -i.version)

    async def policy_ids(self) -> set[str]:
        return {_s(k) for k in await self.redis.hkeys(self._policies_latest)}

    async def cases(self) -> list[SuiteCase]:
        """Every case of the latest suites (stored suites were valid when saved)."""
        cases, _ = await asyncio.to_thread(check_suites, await self.texts())
        return cases

    async def check(
        self, changed: Mapping[str, str], also_known: Iterable[str] = (), *, parse: Parse | None = None
    ) -> tuple[list[SuiteCase], list[Problem]]:
        """The stored suites with ``changed`` (file name → text) in place: cases and the problems of
        ``changed``. Policy ids must be stored ones, or in ``also_known`` (policies being imported).
        ``parse`` runs the (CPU-bound) check off the event loop: a thread by default."""
        texts = {**await self.texts(), **changed}
        known = {*await self.policy_ids(), *also_known}
        run = parse or _in_thread
        cases, problems = await run(_check_last, texts, known, tuple(changed))
        return cases, [p for p in problems if p.file in changed]

    # -- writing ------------------------------------------------------------------------------
    async def save(
        self,
        file: str,
        content: str,
        *,
        author: str,
        message: str = "",
        base_version: int | None = None,
        parse: Parse | None = None,
    ) -> SuiteRecord:
        """A new version of one suite file; refused with its problems, or on a stale base."""
        name = suite_name(file)
        _check_name(name)
        cases, problems = await self.check({f"{name}.yaml": content}, parse=parse)
        if problems:
            raise SuiteRefused(problems)
        count = sum(c.file == f"{name}.yaml" for c in cases)
        return await self._store(
            name, content, count, author=author, message=message, base_version=base_version
        )

    async def _store(
        self, name: str, content: str, count: int, *, author: str, message: str, base_version: int | None
    ) -> SuiteRecord:
        for _attempt in range(5):
            latest = int(await self.redis.hget(self._latest, name) or 0)
            if base_version is not None and base_version != latest:
                raise VersionConflict(f"tests/{name}.yaml", base_version, latest)
            record = SuiteRecord(
                name=name, version=latest + 1, author=author, message=message, created_at=time.time(),
                sha256=content_hash(content), cases=count, content=content,
            )  # fmt: skip
            keys = [self._latest, self._doc_prefix + name]
            stored, current = await self._save_script(
                keys=keys, args=[name, latest, record.version, record.model_dump_json()]
            )
            if int(stored) != -1:
                log.info("policy_tests.suite_saved", suite=record.label(), cases=count, author=author)
                return record
            if base_version is not None:
                raise VersionConflict(f"tests/{name}.yaml", base_version, int(current))
        now = int(await self.redis.hget(self._latest, name) or 0)
        raise VersionConflict(f"tests/{name}.yaml", latest, now)

    async def import_texts(
        self, texts: Mapping[str, str], *, author: str, message: str, also_known: Iterable[str] = ()
    ) -> list[SuiteImport]:
        """Every changed file a new version (all or nothing: any problem refuses them all)."""
        cases, problems = await self.check(texts, also_known)
        if problems:
            raise SuiteRefused(problems)
        results = []
        for file in sorted(texts):
            name = suite_name(file)
            count = sum(c.file == f"{name}.yaml" for c in cases)
            for _attempt in range(5):
                try:
                    stored: SuiteRecord | None = await self.get(name)
                except KeyError:
                    stored = None
                if stored is not None and stored.content == texts[file]:
                    results.append(SuiteImport(name, None))
                    break
                try:
                    record = await self._store(name, texts[file], count, author=author, message=message,
                                               base_version=stored.version if stored else 0)  # fmt: skip
                except VersionConflict:
                    continue  # someone saved meanwhile (another instance seeding): look again
                results.append(SuiteImport(name, record.version))
                break
        return results

    async def import_dir(self, directory: str | Path, *, author: str, message: str) -> list[SuiteImport]:
        texts, problems = await asyncio.to_thread(read_suite_dir, directory)
        if problems:
            raise SuiteRefused(problems)
        return await self.import_texts(texts, author=author, message=message) if texts else []

    async def export_dir(self, directory: str | Path) -> list[Path]:
        records = await self.records()
        return await asyncio.to_thread(_write_all, Path(directory), [(r.file, r.content) for r in records])

    async def seed_if_empty(self, directory: str | Path) -> list[SuiteImport]:
        """Fill an empty suite store from ``directory`` (startup, after the policies are seeded)."""
        if not await self.is_empty() or not await asyncio.to_thread(Path(directory).is_dir):
            return []
        message = f"seeded from {Path(directory).parent.name}/{Path(directory).name}/"
        try:
            results = await self.import_dir(directory, author="seed", message=message)
        except (SuiteRefused, VersionConflict) as exc:  # a bad suite file must not stop the service
            log.warning("policy_tests.seed_refused", directory=str(directory), error=str(exc)[:500])
            return []
        log.info("policy_tests.suites_seeded", suites=[r.name for r in results if r.version])
        return results


Parse = Callable[..., Awaitable[Any]]


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


def _check_last(
    texts: Mapping[str, str], known: set[str], last: tuple[str, ...]
) -> tuple[list[SuiteCase], list[Problem]]:
    return check_suites(texts, known, last=last)


def _write_all(out: Path, files: list[tuple[str, str]]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for file, content in files:
        path = out / file
        path.write_bytes(content.encode("utf-8"))
        written.append(path)
    return written


def _check_name(name: str) -> None:
    if not ID_RE.fullmatch(name):
        raise KeyError(f"{name!r} is not a valid suite name")


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
