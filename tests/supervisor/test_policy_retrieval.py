"""Retrieval: bm25s over sections, the recall floor on labelled caller questions, atomic swaps."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import yaml

from supervisor.policies import PolicyLibrary
from supervisor.policy_format import parse_policy

QUESTIONS = yaml.safe_load((Path(__file__).parent / "data" / "retrieval_questions.yaml").read_text())
RECALL_AT_3_FLOOR = 0.9  # measured 0.95 (benchmarks/retrieval.py); a regression drops below


def test_the_labelled_set_is_big_enough_and_covers_every_policy(library: PolicyLibrary) -> None:
    assert len(QUESTIONS) >= 30
    assert {q["id"] for q in QUESTIONS} == {d.id for d in library.documents}


def test_recall_at_3_stays_above_the_floor(library: PolicyLibrary) -> None:
    found = [q["id"] in [h.id for h in library.search(q["q"], k=3)] for q in QUESTIONS]
    assert sum(found) / len(found) >= RECALL_AT_3_FLOOR


def test_hits_carry_id_version_section_text_and_score(library: PolicyLibrary) -> None:
    hit = library.search("How much does expedited shipping cost?", k=1)[0]
    assert (hit.id, hit.version, hit.section) == ("shipping", 2, "Expedited shipping")
    assert "$14.95" in hit.text and hit.score > 0


def test_inline_text_holds_every_published_policy_with_its_version(library: PolicyLibrary) -> None:
    text = library.inline_text()
    for doc in library.documents:
        assert f"## Policy {doc.label()}: {doc.title}" in text
    assert "Kayaks, canoes, paddleboards and roof boxes ship by freight" in text


def test_replace_swaps_the_index_atomically_under_concurrent_searches(library: PolicyLibrary) -> None:
    """Searches in other threads always see one whole set: version and text never mix."""
    old = library.documents
    returns = library.get("returns")
    assert returns is not None
    changed = parse_policy(
        returns.content.replace("within 30 days of purchase", "within 45 days of purchase").replace(
            "version: 3", "version: 4"
        )
    )
    lib = PolicyLibrary(old)
    seen: set[str] = set()
    mixed: list[str] = []
    done = threading.Event()

    def searcher() -> None:
        while not done.is_set():
            hit = lib.search("return unused items receipt window", k=1)[0]
            if ("45 days" in hit.text) != (hit.version == 4):
                mixed.append(hit.label())
            seen.add(hit.label())

    threads = [threading.Thread(target=searcher) for _ in range(2)]
    for t in threads:
        t.start()
    for i in range(40):
        lib.replace([*[d for d in old if d.id != "returns"], changed if i % 2 == 0 else returns])
        time.sleep(0.002)
    done.set()
    for t in threads:
        t.join()
    assert mixed == [] and seen == {"returns@3", "returns@4"}
