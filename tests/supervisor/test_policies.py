from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from supervisor.policies import PolicyError, PolicyLibrary, load_policies, parse_policy, stem, tokenize
from tests.support.paths import POLICIES_DIR

REQUIRED = {
    "returns",
    "shipping",
    "warranty",
    "price-match",
    "membership",
    "account-security",
    "store-pickup",
}

DOC = """---
id: demo
title: Demo Policy
version: 2
tags: [demo, sample]
owner: Test Team
effective_date: 2025-01-01
status: published
---
# Demo Policy

Intro text that
wraps over lines.

## First rule

Kayaks ship by freight.

## Second rule ##

Canoes need a roof rack.
"""


def test_sample_policies_parse_with_front_matter_and_sections() -> None:
    docs = {d.id: d for d in load_policies(POLICIES_DIR)}
    assert len(docs) >= 7 and REQUIRED <= set(docs)
    for doc in docs.values():
        assert doc.status == "published" and doc.owner and doc.tags
        assert isinstance(doc.effective_date, date)
        assert len([s for s in doc.sections if s.heading != "Overview"]) >= 3, doc.id
    returns = docs["returns"]
    assert (returns.title, returns.version, returns.label()) == ("Returns and Refunds", 3, "returns@3")
    body = " ".join(s.text for s in returns.sections)
    for fact in ("30 days", "60 days", "Trail Tested", "15 days", "15% restocking fee", "5–7 business days"):
        assert fact in body


def test_parse_splits_sections_and_keeps_intro_as_overview() -> None:
    doc = parse_policy(DOC, source="demo.md")
    assert [s.heading for s in doc.sections] == ["Overview", "First rule", "Second rule"]
    assert doc.sections[0].text == "Intro text that wraps over lines."
    assert doc.section("second RULE") is not None and doc.section("missing") is None
    assert doc.source == "demo.md" and doc.tags == ["demo", "sample"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("## no front matter\n\ntext", "missing YAML front matter"),
        (DOC.replace("version: 2", "version: two"), "version"),
        (DOC.replace("owner: Test Team\n", ""), "owner"),
        (DOC.replace("id: demo", "id: Not An Id"), "id"),
        (DOC.replace("tags: [demo, sample]", "tags: [demo"), "invalid YAML"),
    ],
)
def test_invalid_documents_are_rejected(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy(text)


def test_duplicate_ids_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text(DOC)
    (tmp_path / "b.md").write_text(DOC)
    with pytest.raises(PolicyError, match="duplicate policy id"):
        load_policies(tmp_path)


def test_light_stemming_and_stopwords() -> None:
    words = ("tents", "shipping", "returned", "bags", "glasses", "policies", "gps", "carried")
    assert [stem(w) for w in words] == ["tent", "ship", "return", "bag", "glass", "policy", "gps", "carry"]
    assert tokenize("Can I return the used tents?") == ["return", "used", "tent"]


@pytest.mark.parametrize(
    ("question", "top_id", "section"),
    [
        ("Can I return a used tent?", "returns", "Trail Tested guarantee for camping gear"),
        ("I opened my GPS, can I still return it?", "returns", "Electronics"),
        ("How much is expedited shipping?", "shipping", "Expedited shipping"),
        ("Do you match Amazon prices?", "price-match", "Competitors we match"),
        ("What does the Summit Club membership cost?", "membership", "Cost and sign-up"),
        ("My headlamp stopped working after a year, is that covered?", "warranty", None),
        ("How long will you hold my pickup order?", "store-pickup", "How long orders are held"),
        ("How do you verify my identity?", "account-security", "Verifying a caller's identity"),
    ],
)
def test_search_ranks_by_the_question(
    library: PolicyLibrary, question: str, top_id: str, section: str | None
) -> None:
    hits = library.search(question)
    assert hits and hits[0].id == top_id
    if section:
        assert hits[0].section == section
    assert hits[0].version == library.get(top_id).version  # type: ignore[union-attr]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_search_limits_and_unknown_topics(library: PolicyLibrary) -> None:
    assert len(library.search("returns refund shipping warranty", k=5)) == 5
    assert library.search("the and of", k=3) == []
    assert library.search("xylophone zeppelin") == []
    assert library.search("returns", k=0) == []


def test_drafts_are_not_searchable_but_can_be_fetched(library: PolicyLibrary) -> None:
    draft = parse_policy(DOC.replace("status: published", "status: draft"))
    lib = PolicyLibrary([*library.documents, draft])
    assert lib.get("demo") is draft
    assert all(h.id != "demo" for h in lib.search("kayaks freight canoes roof rack", k=10))
    lib.replace([parse_policy(DOC)])
    assert lib.search("canoes roof rack")[0].id == "demo"
    assert lib.labels() == ["demo@2"]
