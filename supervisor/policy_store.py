"""The versioned policy store in Redis.

Every save is a new, immutable version: the exact Markdown text, author, time, message and
a SHA-256 of the text. A version's ``status`` (draft or published) is part of its text, so
publishing a draft stores a new version whose front matter says ``status: published``, and a
rollback stores a new version with an old version's content. Nothing is ever overwritten,
so ``get_version(id, n)`` returns the exact text a supervisor saw when it cited ``id@n``.

The store assigns version numbers and writes them into the front matter's ``version:`` line.
A file that declares a higher version than the store holds keeps its number (seeding keeps
``returns@3``); otherwise the next number is used. Saves are optimistic: the caller states
the version it edited (``base_version``) and a save on a stale base fails with
:class:`VersionConflict`; a Lua script checks and writes atomically.

Redis layout (one hash tag, Cluster-safe, ``P = <prefix>:{policies}``): ``P:latest`` (hash
id → latest version), ``P:published`` (hash id → latest published version), ``P:doc:<id>``
(hash version → JSON record), ``P:gen`` (change counter). Every change is announced on the
pub/sub channel ``<prefix>:policies:changed``.
"""

from __future__ import annotations

import difflib
import hashlib
import time
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from pydantic import BaseModel
from redis.asyncio import Redis

from supervisor.policy_format import (
    ID_RE,
    PolicyDocument,
    PolicyError,
    Problem,
    Status,
    check_references,
    check_text,
    with_status,
    with_version,
)
from supervisor.suite_record import GateRecord

log = structlog.get_logger("policies.store")

Which = Literal["latest", "published"]

_SAVE = """
local latest = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if latest ~= tonumber(ARGV[2]) then return {-1, latest} end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if ARGV[5] == 'published' then redis.call('HSET', KEYS[3], ARGV[1], ARGV[3]) end
local gen = redis.call('INCR', KEYS[4])
redis.call('PUBLISH', ARGV[6], cjson.encode({id = ARGV[1], version = tonumber(ARGV[3]), gen = gen}))
return {tonumber(ARGV[3]), gen}
"""


class StoreError(Exception):
    """Base class of the store's errors."""


class VersionConflict(StoreError):
    """The save was based on a version that is no longer the latest."""

    def __init__(self, policy_id: str, base: int, latest: int) -> None:
        super().__init__(f"{policy_id}: edited version {base} but the latest is {latest}")
        self.policy_id, self.base, self.latest = policy_id, base, latest


class UnknownVersion(StoreError):
    """No such policy or version."""


class VersionInfo(BaseModel):
    id: str
    version: int
    status: Status
    author: str
    message: str
    created_at: float
    sha256: str
    tests: GateRecord | None = None  # the policy test gate this version passed (or was let through)

    def label(self) -> str:
        return f"{self.id}@{self.version}"


class VersionRecord(VersionInfo):
    content: str

    def info(self) -> VersionInfo:
        return VersionInfo(**self.model_dump(exclude={"content"}))

    def document(self) -> PolicyDocument:
        doc, problems = check_text(self.content, f"{self.id}.md")
        if doc is None:  # stored versions were valid when saved; this means a format change
            raise PolicyError("; ".join(str(p) for p in problems))
        return doc


@dataclass(frozen=True)
class ImportResult:
    id: str
    version: int | None  # None: the store already held exactly this text


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def changed_channel(prefix: str) -> str:
    return f"{prefix}:policies:changed"


class PolicyStore:
    """Versioned policy documents in Redis (see the module docstring for the layout)."""

    def __init__(self, redis: Redis, prefix: str = "rt") -> None:
        self.redis = redis
        self.prefix = prefix
        base = f"{prefix}:{{policies}}"
        self._latest, self._published, self._gen = f"{base}:latest", f"{base}:published", f"{base}:gen"
        self._doc_prefix = f"{base}:doc:"
        self.channel = changed_channel(prefix)
        self._save_script = redis.register_script(_SAVE)

    # -- reading ------------------------------------------------------------------------------
    async def is_empty(self) -> bool:
        return not await self.redis.hlen(self._latest)

    async def generation(self) -> int:
        return int(await self.redis.get(self._gen) or 0)

    async def ids(self) -> list[str]:
        return sorted(_s(k) for k in await self.redis.hkeys(self._latest))

    async def latest_version(self, policy_id: str) -> int:
        return int(await self.redis.hget(self._latest, policy_id) or 0)

    async def published_version(self, policy_id: str) -> int:
        return int(await self.redis.hget(self._published, policy_id) or 0)

    async def get_version(self, policy_id: str, version: int) -> VersionRecord:
        """The exact stored version; raises :class:`UnknownVersion`."""
        _check_id(policy_id)
        raw = await self.redis.hget(self._doc_prefix + policy_id, str(version))
        if raw is None:
            raise UnknownVersion(f"{policy_id}@{version} does not exist")
        return VersionRecord.model_validate_json(raw)

    async def get(self, policy_id: str, which: Which = "latest") -> VersionRecord:
        _check_id(policy_id)
        pointer = self._latest if which == "latest" else self._published
        version = await self.redis.hget(pointer, policy_id)
        if version is None:
            raise UnknownVersion(f"{policy_id} has no {which} version")
        return await self.get_version(policy_id, int(version))

    async def history(self, policy_id: str) -> list[VersionInfo]:
        """Every version of a policy, newest first."""
        _check_id(policy_id)
        raws = await self.redis.hvals(self._doc_prefix + policy_id)
        infos = [VersionRecord.model_validate_json(r).info() for r in raws]
        return sorted(infos, key=lambda i: -i.version)

    async def records(self, which: Which = "latest") -> list[VersionRecord]:
        """One record per policy: its latest version, or its latest published one."""
        pointer = self._latest if which == "latest" else self._published
        pointers = {_s(k): _s(v) for k, v in (await self.redis.hgetall(pointer)).items()}
        pipe = self.redis.pipeline(transaction=False)
        for pid in sorted(pointers):
            pipe.hget(self._doc_prefix + pid, pointers[pid])
        raws = await pipe.execute()
        return [VersionRecord.model_validate_json(r) for r in raws if r is not None]

    async def documents(self, which: Which = "published") -> list[PolicyDocument]:
        """Parsed documents: the published set (what callers get) or the latest (drafts included).

        A stored version that no longer parses (the format got stricter) is left out and logged
        rather than taking every other policy down with it.
        """
        docs = []
        for record in await self.records(which):
            try:
                docs.append(record.document())
            except PolicyError as exc:
                log.error("policies.unparsable_version", policy=record.label(), error=str(exc))
        return docs

    async def unknown_references(self, doc: PolicyDocument) -> list[Problem]:
        """Problems for references of ``doc`` to policies the store does not hold."""
        return check_references([doc], {*await self.ids(), doc.id})

    async def diff(self, policy_id: str, old: int, new: int) -> str:
        """A unified diff between two versions of one policy."""
        a, b = await self.get_version(policy_id, old), await self.get_version(policy_id, new)
        lines = difflib.unified_diff(
            a.content.splitlines(keepends=True),
            b.content.splitlines(keepends=True),
            fromfile=f"{policy_id}@{old}",
            tofile=f"{policy_id}@{new}",
        )
        return "".join(lines)

    # -- writing ------------------------------------------------------------------------------
    async def save(
        self,
        content: str,
        *,
        author: str,
        message: str = "",
        base_version: int | None = None,
        policy_id: str | None = None,
        tests: GateRecord | None = None,
    ) -> VersionRecord:
        """Store ``content`` as a new version of the policy it declares.

        ``base_version`` is the version the author edited (0 for a new policy); a stale base
        raises :class:`VersionConflict`. Without it the save goes on top of whatever is latest.
        Invalid content raises :class:`PolicyError`; ``policy_id`` must match the content's id.
        ``tests``: the policy test gate the version passed, kept with it.
        """
        doc, problems = check_text(content, f"{policy_id or 'policy'}.md")
        if doc is None or problems:
            raise PolicyError("; ".join(str(p) for p in problems))
        if policy_id is not None and doc.id != policy_id:
            raise PolicyError(f"the document's id {doc.id!r} does not match {policy_id!r}")
        for _attempt in range(5):
            latest = await self.latest_version(doc.id)
            if base_version is not None and base_version != latest:
                raise VersionConflict(doc.id, base_version, latest)
            version = doc.version if doc.version > latest else latest + 1
            text = with_version(content, version)
            record = VersionRecord(
                id=doc.id,
                version=version,
                status=doc.status,
                author=author,
                message=message,
                created_at=time.time(),
                sha256=content_hash(text),
                content=text,
                tests=tests,
            )
            keys = [self._latest, self._doc_prefix + doc.id, self._published, self._gen]
            args = [doc.id, latest, version, record.model_dump_json(), doc.status, self.channel]
            stored, gen = await self._save_script(keys=keys, args=args)
            if int(stored) != -1:
                log.info(
                    "policies.saved", policy=record.label(), status=record.status, author=author, gen=gen
                )
                return record
            if base_version is not None:
                raise VersionConflict(doc.id, base_version, int(gen))
        raise VersionConflict(doc.id, latest, await self.latest_version(doc.id))

    async def publish(
        self,
        policy_id: str,
        version: int,
        *,
        author: str,
        base_version: int | None = None,
        message: str = "",
        tests: GateRecord | None = None,
    ) -> VersionRecord:
        """Publish ``version``: a new version with its content and ``status: published``."""
        record = await self.get_version(policy_id, version)
        text = with_status(record.content, "published")
        return await self.save(
            text,
            author=author,
            message=message or f"publish version {version}",
            base_version=base_version,
            policy_id=policy_id,
            tests=tests,
        )

    async def rollback(
        self, policy_id: str, version: int, *, author: str, base_version: int | None = None, message: str = ""
    ) -> VersionRecord:
        """A new version with the content of ``version`` (its status included)."""
        record = await self.get_version(policy_id, version)
        return await self.save(
            record.content,
            author=author,
            message=message or f"rollback to version {version}",
            base_version=base_version,
            policy_id=policy_id,
        )

    async def import_text(
        self, content: str, *, author: str, message: str, tests: GateRecord | None = None
    ) -> ImportResult:
        """Save ``content`` unless the latest version already holds exactly this text."""
        doc, problems = check_text(content, "import")
        if doc is None or problems:
            raise PolicyError("; ".join(str(p) for p in problems))
        for _attempt in range(5):
            try:
                latest: VersionRecord | None = await self.get(doc.id)
            except UnknownVersion:
                latest = None
            if latest is not None and with_version(content, latest.version) == latest.content:
                return ImportResult(doc.id, None)  # the same text (a file may lag on its version line)
            try:
                record = await self.save(
                    content, author=author, message=message, base_version=latest.version if latest else 0,
                    tests=tests,
                )  # fmt: skip
            except VersionConflict:
                continue  # someone saved meanwhile (another instance seeding): look again
            return ImportResult(doc.id, record.version)
        raise VersionConflict(doc.id, 0, await self.latest_version(doc.id))


def _check_id(policy_id: str) -> None:
    if not ID_RE.fullmatch(policy_id):
        raise UnknownVersion(f"{policy_id!r} is not a valid policy id")


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
