"""Policy documents: parse, validate, index and search.

A policy document is a Markdown file with YAML front matter::

    ---
    id: returns
    title: Returns and Refunds
    version: 3
    tags: [returns, refunds]
    owner: Customer Care Operations
    effective_date: 2025-03-01
    status: published
    ---
    ## Standard return window
    …

The body is split into sections at ``## `` headings (text before the first one becomes an
"Overview" section). Search ranks *sections* with Okapi BM25; each section is scored on its
document's title and tags, its heading and its text, so a query about "expedited shipping"
finds the shipping section even when the words sit only in the title or tags. Only documents
with ``status: published`` are searchable; drafts can still be fetched by id.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

import structlog
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

log = structlog.get_logger("policies")

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)(.*)\Z", re.DOTALL)
_SECTION_HEADING = re.compile(r"^##[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_TITLE_HEADING = re.compile(r"^#[ \t]+.*$", re.MULTILINE)
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")

STOPWORDS = frozenset(
    """a an and are as at be by can do does for from has have how i if in is it its me my of on or
    our so that the their there this to was we what when where which who will with you your""".split()
)


class PolicyError(ValueError):
    """A policy document could not be parsed or is invalid."""


class PolicySection(BaseModel):
    model_config = ConfigDict(frozen=True)

    heading: str
    text: str


class PolicyDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str = Field(min_length=1)
    version: int = Field(ge=1)
    tags: list[str] = Field(default_factory=list)
    owner: str = Field(min_length=1)
    effective_date: date
    status: Literal["draft", "published", "retired"] = "published"
    sections: list[PolicySection] = Field(default_factory=list)
    source: str = ""

    def label(self) -> str:
        return f"{self.id}@{self.version}"

    def section(self, heading: str) -> PolicySection | None:
        wanted = heading.strip().lower()
        return next((s for s in self.sections if s.heading.lower() == wanted), None)


class SearchHit(BaseModel):
    id: str
    title: str
    version: int
    section: str
    text: str
    score: float

    def label(self) -> str:
        return f"{self.id}@{self.version}"


# -- parsing ----------------------------------------------------------------------------------


def parse_policy(text: str, source: str = "") -> PolicyDocument:
    """Parse one Markdown policy document; raises :class:`PolicyError` when it is invalid."""
    match = _FRONT_MATTER.match(text.lstrip("\ufeff"))
    if match is None:
        raise PolicyError(f"{source or 'policy'}: missing YAML front matter between '---' lines")
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source or 'policy'}: invalid YAML front matter: {exc}") from exc
    if not isinstance(meta, dict):
        raise PolicyError(f"{source or 'policy'}: front matter must be a mapping")
    sections = split_sections(match.group(2))
    if not sections:
        raise PolicyError(f"{source or 'policy'}: no content")
    try:
        return PolicyDocument.model_validate({**meta, "sections": sections, "source": source})
    except ValidationError as exc:
        raise PolicyError(f"{source or 'policy'}: {exc}") from exc


def split_sections(body: str) -> list[PolicySection]:
    """Split a Markdown body at ``## `` headings; the ``# `` title line is dropped."""
    body = _TITLE_HEADING.sub("", body)
    parts = _SECTION_HEADING.split(body)
    sections: list[PolicySection] = []
    intro = _squash(parts[0])
    if intro:
        sections.append(PolicySection(heading="Overview", text=intro))
    for heading, text in zip(parts[1::2], parts[2::2], strict=True):
        content = _squash(text)
        if content:
            sections.append(PolicySection(heading=heading.strip(), text=content))
    return sections


def _squash(text: str) -> str:
    """Join wrapped lines into paragraphs (blank lines stay paragraph breaks)."""
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    return "\n\n".join(p for p in paragraphs if p)


def load_policies(directory: str | Path) -> list[PolicyDocument]:
    """Every ``*.md`` document in ``directory`` (not recursive), sorted by id."""
    docs: list[PolicyDocument] = []
    seen: dict[str, str] = {}
    for path in sorted(Path(directory).glob("*.md")):
        doc = parse_policy(path.read_text(encoding="utf-8"), source=path.name)
        if doc.id in seen:
            raise PolicyError(f"{path.name}: duplicate policy id {doc.id!r} (also in {seen[doc.id]})")
        seen[doc.id] = path.name
        docs.append(doc)
    return sorted(docs, key=lambda d: d.id)


# -- tokenizing -------------------------------------------------------------------------------


def stem(word: str) -> str:
    """A deliberately light stemmer: strips possessives, plural -s/-es, -ing and -ed."""
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) > 5 and word.endswith("ing"):
        return _undouble(word[:-3])
    if len(word) > 4 and word.endswith("ied"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith("ed") and not word.endswith("eed"):
        return _undouble(word[:-2])
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _undouble(word: str) -> str:
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
        return word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    """Lowercase word tokens without stopwords, lightly stemmed."""
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


# -- search -----------------------------------------------------------------------------------


@dataclass
class _Entry:
    doc: PolicyDocument
    section: PolicySection
    tf: Counter[str]
    length: int


@dataclass
class _Index:
    entries: list[_Entry] = field(default_factory=list)
    df: Counter[str] = field(default_factory=Counter)
    avg_len: float = 1.0


class PolicyLibrary:
    """The policy documents in memory, with BM25 search over their sections."""

    def __init__(self, documents: Iterable[PolicyDocument], *, k1: float = 1.4, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self._docs: dict[str, PolicyDocument] = {}
        self._index = _Index()
        self.replace(documents)

    @classmethod
    def from_dir(cls, directory: str | Path) -> PolicyLibrary:
        library = cls(load_policies(directory))
        log.info("policies.loaded", directory=str(directory), policies=library.labels())
        return library

    def replace(self, documents: Iterable[PolicyDocument]) -> None:
        """Swap in a new set of documents (used when editors publish a change)."""
        docs = {d.id: d for d in documents}
        index = _Index()
        for doc in docs.values():
            if doc.status != "published":
                continue
            prefix = " ".join([doc.title, *doc.tags])
            for section in doc.sections:
                tokens = tokenize(f"{prefix} {section.heading} {section.text}")
                index.entries.append(_Entry(doc, section, Counter(tokens), len(tokens)))
                index.df.update(set(tokens))
        if index.entries:
            index.avg_len = sum(e.length for e in index.entries) / len(index.entries)
        self._docs, self._index = docs, index

    @property
    def documents(self) -> list[PolicyDocument]:
        return list(self._docs.values())

    def labels(self) -> list[str]:
        return [d.label() for d in self._docs.values()]

    def get(self, policy_id: str) -> PolicyDocument | None:
        return self._docs.get(policy_id)

    def search(self, topic: str, k: int = 3) -> list[SearchHit]:
        """The ``k`` best-matching published sections for ``topic``, best first (score > 0)."""
        terms = set(tokenize(topic))
        index = self._index
        n = len(index.entries)
        if not terms or n == 0 or k <= 0:
            return []
        scored: list[tuple[float, int]] = []
        for pos, entry in enumerate(index.entries):
            score = 0.0
            for term in terms:
                tf = entry.tf.get(term, 0)
                if not tf:
                    continue
                df = index.df[term]
                idf = math.log(1.0 + (n - df + 0.5) / (df + 0.5))
                norm = self.k1 * (1.0 - self.b + self.b * entry.length / index.avg_len)
                score += idf * tf * (self.k1 + 1.0) / (tf + norm)
            if score > 0:
                scored.append((score, pos))
        scored.sort(key=lambda sp: (-sp[0], sp[1]))
        hits = []
        for score, pos in scored[:k]:
            entry = index.entries[pos]
            hits.append(
                SearchHit(
                    id=entry.doc.id,
                    title=entry.doc.title,
                    version=entry.doc.version,
                    section=entry.section.heading,
                    text=entry.section.text,
                    score=round(score, 3),
                )
            )
        return hits
