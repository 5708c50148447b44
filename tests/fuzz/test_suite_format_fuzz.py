"""Policy test suite files: any text is either cases or problems with lines, never an exception.

``check_suite_text`` runs on what an editor types into the suite pane and on every imported
``policies/tests/*.yaml``; whatever the text (YAML of any shape, broken YAML, deep nesting,
aliases), it must come back as ``file:line`` problems inside the file.
"""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from supervisor.policy_tests.cases import check_suite_text

FUZZ = settings(max_examples=150, deadline=None)

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=40), st.dates())
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
case_like = st.fixed_dictionaries(
    {"id": st.text(max_size=20) | st.just("a-case"), "question": values, "expect": values},
    optional={"turns": values, "data": values, "extra": values},
)
documents = st.one_of(
    st.text(max_size=300),
    values.map(lambda v: yaml.safe_dump(v, allow_unicode=True)),
    st.lists(case_like, max_size=3).map(lambda cases: yaml.safe_dump({"cases": cases}, allow_unicode=True)),
)


def _check(text: str) -> tuple[list[Any], list[Any]]:
    cases, problems = check_suite_text(text, "fuzz.yaml")
    lines = max(1, text.count("\n") + 1)
    for problem in problems:
        assert problem.file == "fuzz.yaml" and 1 <= problem.line <= lines + 1, problem
    assert cases == [] or problems == [] or all(p.message.startswith("duplicate key") for p in problems)
    return cases, problems


@FUZZ
@given(text=documents)
@example(text="cases: " + "[" * 5000)
@example(text="a: &x [1, 2]\nb: [*x, *x, *x]\n")
@example(text="cases:\n  - id: ok-case\n    question: q\n    expect: {}\n    expect: {}\n")
@example(text="cases: [{id: ok-case, question: q, expect: {facts: [[]]}}]")
@example(text="\ud800")
def test_any_text_is_cases_or_problems_with_lines(text: str) -> None:
    _check(text)
