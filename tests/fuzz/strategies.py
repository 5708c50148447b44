"""Hypothesis strategies shared by the fuzz tests: garbage values and huge/unicode strings."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

HUGE = 70_000  # larger than one 64 KiB frame once encoded

huge_text = st.sampled_from(["x" * HUGE, "é" * (HUGE // 2), "🎉" * 1000, "\u202e" * 500, "\x00" * 100])
text = st.text(max_size=40) | huge_text
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
)
# any JSON value (lists and objects where a string is expected, and so on)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
# JSON texts that are not objects, or not JSON at all, or nested beyond any parser's patience
not_objects = st.one_of(
    st.text(max_size=60),
    json_values.map(json.dumps),
    st.sampled_from(
        [
            "",
            "null",
            "[]",
            "{",
            '{"event": ',
            "[" * 100_000,
            "[" * 5000 + "]" * 5000,
            '{"a":' * 3000 + "1" + "}" * 3000,
            '"\\ud800"',
            '{"event": "\\udfff"}',
            "NaN",
            "1e999999",
        ]
    ),
)


def maybe_drop(draw: Any, frame: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """Randomly drop some of ``keys`` or replace their values with garbage."""
    for key in keys:
        how = draw(st.sampled_from(["keep", "keep", "keep", "drop", "garbage"]))
        if how == "drop":
            frame.pop(key, None)
        elif how == "garbage":
            frame[key] = draw(json_values)
    return frame


def broken(draw: st.DrawFn, event: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    """``event`` broken a little: up to two of ``fields`` (or a key of an object among them)
    dropped or replaced by any JSON value. Shared by the engines' server-event fuzzers."""
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from(fields))
        target = event
        nested = event.get(key)
        if isinstance(nested, dict) and nested and draw(st.booleans()):
            target, key = nested, draw(st.sampled_from(sorted(nested)))
        if draw(st.booleans()):
            target.pop(key, None)
        else:
            target[key] = draw(json_values)
    return event
