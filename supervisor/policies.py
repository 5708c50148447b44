"""Policy documents in memory: ranked search over their sections, and the inline prompt text.

The format (front matter schema, checks with file:line problems) lives in
:mod:`supervisor.policy_format`; the versioned Redis store in :mod:`supervisor.policy_store`.

Search ranks *sections* with Okapi BM25 (the ``bm25s`` library). Each section is indexed
with its document's title and tags, its heading and its text, so a query about "expedited
shipping" finds the shipping section even when the words sit only in the title or tags.
Only ``status: published`` documents are searchable; drafts can still be fetched by id.
:meth:`PolicyLibrary.replace` builds a complete new index and swaps it in with a single
assignment, so a search running meanwhile sees either the old set or the new one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np
import structlog
from pydantic import BaseModel

from supervisor.policy_format import (
    PolicyDocument,
    PolicyError,
    PolicySection,
    load_policies,
    parse_policy,
    split_sections,
)

__all__ = [
    "PolicyDocument",
    "PolicyError",
    "PolicyLibrary",
    "PolicySection",
    "SearchHit",
    "load_policies",
    "parse_policy",
    "split_sections",
    "stem",
    "tokenize",
]

log = structlog.get_logger("policies")

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")

STOPWORDS = frozenset(
    """a an and are as at be by can do does for from has have how i if in is it its me my of on or
    our so that the their there this to was we what when where which who will with you your""".split()
)


class SearchHit(BaseModel):
    id: str
    title: str
    version: int
    section: str
    text: str
    score: float

    def label(self) -> str:
        return f"{self.id}@{self.version}"


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


@dataclass(frozen=True)
class _Index:
    """One immutable snapshot: documents by id, the searchable sections and their BM25 model."""

    docs: dict[str, PolicyDocument]
    entries: list[tuple[PolicyDocument, PolicySection]]
    model: bm25s.BM25 | None


def _build(documents: Iterable[PolicyDocument], k1: float, b: float) -> _Index:
    docs = {d.id: d for d in sorted(documents, key=lambda d: d.id)}
    entries: list[tuple[PolicyDocument, PolicySection]] = []
    corpus: list[list[str]] = []
    for doc in docs.values():
        if doc.status != "published":
            continue
        prefix = " ".join([doc.title, *doc.tags])
        for section in doc.sections:
            entries.append((doc, section))
            corpus.append(tokenize(f"{prefix} {section.heading} {section.text}") or ["_"])
    model = None
    if corpus:
        model = bm25s.BM25(k1=k1, b=b)
        model.index(corpus, show_progress=False)
    return _Index(docs, entries, model)


class PolicyLibrary:
    """A set of policy documents with BM25 search over the published ones' sections."""

    def __init__(self, documents: Iterable[PolicyDocument], *, k1: float = 1.4, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self._index = _build(documents, k1, b)

    @classmethod
    def from_dir(cls, directory: str | Path) -> PolicyLibrary:
        library = cls(load_policies(directory))
        log.info("policies.loaded", directory=str(directory), policies=library.labels())
        return library

    def replace(self, documents: Iterable[PolicyDocument]) -> None:
        """Swap in a new set of documents: the new index is complete before it is visible."""
        self._index = _build(documents, self.k1, self.b)

    @property
    def documents(self) -> list[PolicyDocument]:
        return list(self._index.docs.values())

    def labels(self) -> list[str]:
        return [d.label() for d in self._index.docs.values()]

    def get(self, policy_id: str) -> PolicyDocument | None:
        return self._index.docs.get(policy_id)

    def published(self) -> list[PolicyDocument]:
        return [d for d in self._index.docs.values() if d.status == "published"]

    def inline_text(self) -> str:
        """Every published document as one prompt block, each headed by its ``id@version``."""
        blocks = [
            f"## Policy {d.label()}: {d.title}\n\n"
            + "\n\n".join(f"### {s.heading}\n{s.text}" for s in d.sections)
            for d in self.published()
        ]
        return "\n\n".join(blocks)

    def search(self, topic: str, k: int = 3) -> list[SearchHit]:
        """The ``k`` best-matching published sections for ``topic``, best first (score > 0)."""
        index = self._index  # one snapshot for the whole search
        if index.model is None or k <= 0:
            return []
        vocab = index.model.vocab_dict
        terms = [t for t in dict.fromkeys(tokenize(topic)) if t in vocab]
        if not terms:
            return []
        scores = np.asarray(index.model.get_scores(terms), dtype=float)
        order = sorted((i for i in np.flatnonzero(scores > 0)), key=lambda i: (-scores[i], i))
        hits = []
        for pos in order[:k]:
            doc, section = index.entries[pos]
            hits.append(
                SearchHit(
                    id=doc.id,
                    title=doc.title,
                    version=doc.version,
                    section=section.heading,
                    text=section.text,
                    score=round(float(scores[pos]), 3),
                )
            )
        return hits
