"""Whether this interpreter's regular expressions keep possessive repeats' promise.

The hot paths recognise their commonest frames with possessive regular expressions
(``responder/transports/twilio/frames.py``, ``responder/engines/realtime/delta_frame.py``) and
trust a match to mean the frame has exactly the shape spelled out. CPython 3.11.0–3.11.4
(gh-106052, gh-100061) could leave a possessive repeat that failed part-way with its position
moved on, so that an expression matched text it does not describe (``(?:ab?c)*+`` matched
``a``): on such an interpreter a frame ``json.loads`` rejects could be taken as well formed.
``pyproject.toml`` asks for 3.11.5 or later; should the service still run on an older one,
:data:`SOUND` is False and :func:`regex` gives every fast path an expression that matches
nothing, so each steps aside (``json.loads`` decides every frame) with no check of its own.
"""

from __future__ import annotations

import re
from typing import AnyStr, Final


def _sound() -> bool:
    """The known failure, tried on this interpreter (3.11.2 matches; 3.11.5 and later do not)."""
    return re.fullmatch("(?:ab?c)*+", "a") is None


SOUND: Final = _sound()


def regex(pattern: AnyStr) -> re.Pattern[AnyStr]:
    """``re.compile(pattern)`` for a fast path's possessive expression; on an interpreter that is
    not :data:`SOUND`, an expression of the same kind that never matches."""
    if SOUND:
        return re.compile(pattern)
    return re.compile(b"(?!)" if isinstance(pattern, bytes) else "(?!)")  # type: ignore[arg-type]
