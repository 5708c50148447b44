"""A policy text from the editor is untrusted: its parse is bounded in size, depth and time.

Each case was a stall of the pure-Python parse (the YAML loader's flow-collection scan is
quadratic; two regular expressions backtracked over a long line): now it is refused or parsed
in linear time, long before the budget.
"""

from __future__ import annotations

import time

import pytest

from supervisor.policy_format import MAX_FRONT_MATTER_BYTES, check_text

HEAD = "---\nid: demo\ntitle: Demo\nversion: 1\nowner: Test Team\neffective_date: 2025-01-01\n"
BODY = "---\n# Demo\n\nSome text.\n"
BUDGET_S = 0.25  # the hostile cases took 0.6–1.2 s before; parsed within bounds they take ~1 ms

CASES = {
    # flow nesting: `tags: ` and 3,800 `[` (under the size bound): was 0.6 s
    "flow_nesting": (HEAD + "tags: " + "[" * 3800 + "\n" + BODY, "nested too deeply"),
    # block nesting (compact sequences on one line)
    "block_nesting": (HEAD + "tags:\n" + "- " * 1900 + "a\n" + BODY, "nested too deeply"),
    # quoted closers do not hide the depth from the loader's own guard
    "flow_nesting_quoted": (HEAD + "tags: " + '["]", ' * 600 + "\n" + BODY, "invalid YAML"),
    # front matter above its bound is not parsed at all
    "front_matter_size": (HEAD + "tags: [" + "a, " * 2000 + "a]\n" + BODY, "front matter is"),
    # a section heading padded with 20,000 blanks: was 1.2 s (backtracking)
    "heading_padding": (HEAD + BODY + "## a" + " " * 20000 + "b\n\ntext\n", None),
    # 3,000 unterminated `[[policy:` on one line: was 0.6 s (a scan to the line's end per start)
    "reference_flood": (HEAD + BODY + "[[policy:" * 3000 + "\n", None),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_text_is_refused_or_parsed_in_linear_time(name: str) -> None:
    text, expected = CASES[name]
    started = time.perf_counter()
    doc, problems = check_text(text, "hostile.md")
    elapsed = time.perf_counter() - started
    assert elapsed < BUDGET_S, f"{name}: {elapsed:.3f} s"
    if expected is not None:
        assert doc is None
        assert any(expected in p.message for p in problems), problems


def test_the_bounds_keep_what_a_policy_needs() -> None:
    """A heading keeps its text without the closing hashes, references are found as before, and
    a front matter with 30 tags of 40 characters is well inside its bound."""
    tags = ", ".join(f"tag-{i:02d}-" + "x" * 32 for i in range(30))
    text = (
        HEAD + f"tags: [{tags}]\nrelated: [other]\n"
        "---\n# Demo\n\n## Returns [EU] ##  \n\nSee [[policy:other]] and [[policy:x[y]]].\n"
    )
    assert len(text.split("\n---")[0]) < MAX_FRONT_MATTER_BYTES
    doc, problems = check_text(text, "demo.md")
    assert doc is not None and len(doc.tags) == 30
    assert [s.heading for s in doc.sections] == ["Returns [EU]"]
    assert doc.references == ["other", "x[y"]
    assert [p.message for p in problems] == ["reference 'x[y' is not a valid policy id"]
