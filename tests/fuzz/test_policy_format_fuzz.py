"""Policy front matter: any text is either a parsed policy or a list of problems with lines.

``check_text`` is what the editor's save endpoint, ``responder policies check`` and the policy
sync run on text someone typed; whatever that text is, it must come back as problems with
1-based line numbers inside the document, never as another exception.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from supervisor.policy_format import (
    PolicyDocument,
    PolicyError,
    Problem,
    check_text,
    parse_policy,
    split_sections,
    with_status,
    with_version,
)
from tests.support.fuzz import VALID_META, policy_document

FUZZ = settings(max_examples=100, deadline=None)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=80),
    st.dates(),
    st.datetimes(),
)
yaml_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from([*VALID_META, "related", "extra", ""]) | st.text(max_size=12)

# YAML snippets that construct to something other than what their regexp promises, tags, anchors
tricky_yaml = st.sampled_from(
    [
        "effective_date: 2025-13-45",
        "effective_date: 2001-02-29",
        "effective_date: 2025-02-30 25:61:61",
        "version: 1e999999",
        "version: .nan",
        "tags: &a [*a]",
        "<<: 1",
        "<<: [1, 2]",
        "? [a]\n: 1",
        "id: !!binary aGVsbG8=",
        "id: !!python/object:os.system x",
        "title: !!timestamp 2025-99-99",
        "title: !!int abc",
        "title: !!float abc",
        "id: [" * 60,
        "a: " + "[" * 200 + "]" * 200,  # (deeper flow nesting costs the pure-Python loader ~1 s)
        "x: '\\ud800'",
        'x: "\\ud800"',
        "\t- a",
        "%YAML 1.1\n---\na: 1",
        "...",
        "---",
    ]
)


def _assert_well_formed(text: str, doc: PolicyDocument | None, problems: list[Problem]) -> None:
    n_lines = max(1, len(text.lstrip("\ufeff").splitlines()))
    for problem in problems:
        assert isinstance(problem, Problem)
        assert 1 <= problem.line <= n_lines + 1, (problem, n_lines)
        assert problem.message
    if doc is None:
        assert problems, "an unusable document must say why"
    else:
        assert doc.content == text and doc.sections


def _check(text: str) -> tuple[PolicyDocument | None, list[Problem]]:
    doc, problems = check_text(text, "fuzz.md")
    _assert_well_formed(text, doc, problems)
    try:
        parsed = parse_policy(text, "fuzz.md")
    except PolicyError:
        assert doc is None or problems
    else:
        assert doc is not None and not problems and parsed.id == doc.id
    # the save path rewrites the front matter of whatever it accepts: never an exception either
    for rewritten in (with_version(text, 7), with_status(text, "draft")):
        check_text(rewritten, "fuzz.md")
    return doc, problems


@FUZZ
@given(st.text(max_size=400) | st.text(st.characters(codec=None, categories=["Cs", "Ll", "Zs"]), max_size=50))
@example("---\neffective_date: 2025-13-45\n---\n# T\nx")  # was: ValueError from the YAML loader
@example("---\nid: a\n---\n# T\nx\ud800")  # was: UnicodeEncodeError (a lone surrogate from a JSON body)
@example("\ufeff---\n---\n")
@example("---\n---")
@example("---")
@example("---\n" + "- " * 3000 + "\n---\nbody")
def test_arbitrary_text(text: str) -> None:
    _check(text)


@FUZZ
@given(
    yaml_values,
    st.sampled_from(["\n", "\r\n"]),
    st.text(max_size=200),
)
def test_arbitrary_yaml_front_matter(value: Any, newline: str, body: str) -> None:
    meta_text = yaml.safe_dump(value, allow_unicode=True, default_flow_style=False).strip()
    doc, problems = _check(policy_document(meta_text, body, newline=newline))
    if not isinstance(value, dict):
        assert doc is None and any("mapping" in p.message or "YAML" in p.message for p in problems)


@FUZZ
@given(st.dictionaries(field_names, yaml_values, max_size=6), st.booleans())
def test_plausible_front_matter_with_wrong_fields(overrides: dict[str, Any], drop: bool) -> None:
    meta = {**VALID_META, **overrides}
    if drop and overrides:
        meta.pop(next(iter(overrides)), None)
    doc, problems = _check(policy_document(yaml.safe_dump(meta, allow_unicode=True)))
    if doc is not None and not problems:
        assert doc.id == meta["id"] and doc.version == meta["version"]


@FUZZ
@given(st.lists(tricky_yaml | st.text(max_size=40), min_size=1, max_size=4), st.text(max_size=100))
@example(["effective_date: 2025-13-45"], "x")
@example(["title: !!timestamp 2025-99-99"], "x")
def test_tricky_yaml_lines(lines: list[str], body: str) -> None:
    meta = yaml.safe_dump(VALID_META).strip()
    _check(policy_document("\n".join([meta, *lines]), body))


@FUZZ
@given(st.integers(min_value=1, max_value=200), st.text(min_size=1, max_size=3000))
def test_huge_documents_and_sections(repeat: int, chunk: str) -> None:
    body = "# T\n" + ("## H\n" + chunk + "\n") * repeat
    _check(policy_document(yaml.safe_dump(VALID_META), body))
    split_sections(body)


@pytest.mark.parametrize("version", ["'1'", "1.0", "true", '"3"'])
def test_a_version_that_is_not_a_plain_integer_is_refused(version: str) -> None:
    """The version a document states is compared with the store's: a quoted "1" or 1.0 was
    read as 1 (hypothesis found it), now it is a problem at its line."""
    meta_text = yaml.safe_dump(VALID_META, allow_unicode=True).replace(
        f"version: {VALID_META['version']}", f"version: {version}"
    )
    doc, problems = _check(policy_document(meta_text))
    assert doc is None and any(p.message.startswith("version:") for p in problems), problems
