"""What kinds of repetition a regular expression has: a fast path's expression must have
possessive ones only, so that a frame it turns down costs one pass, never a backtrack."""

from __future__ import annotations

import re._parser as re_parser
from typing import Any


def repeats(pattern: str | bytes) -> set[str]:
    """The kinds of repetition anywhere in ``pattern`` (``POSSESSIVE_REPEAT``, ``MAX_REPEAT``…)."""
    found: set[str] = set()
    stack: list[Any] = list(re_parser.parse(pattern))  # type: ignore[arg-type]  # bytes parse too
    while stack:
        item = stack.pop()
        if isinstance(item, re_parser.SubPattern):
            stack.extend(item)
        elif isinstance(item, tuple | list):
            stack.extend(item)
            if len(item) == 2 and str(item[0]).endswith("_REPEAT"):
                found.add(str(item[0]))
    return found
