"""PII redaction for log events: phone numbers, e-mail addresses, card numbers, key presses.

A structlog processor. Identifiers (call, item, decision ids) and the event name pass
untouched; every other string, nested ones included, is scrubbed.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_CARD = re.compile(r"(?<!\w)(?:\d[ -]?){12,18}\d(?!\w)")
_PHONE = re.compile(r"(?<![\w])\+?\d(?:[\s().-]*\d){6,14}(?![\w])")
_KEEP = frozenset(
    {"event", "level", "timestamp", "logger", "call_id", "decision_id", "item_id", "tool_call_id",
     "user_item_id", "response_id", "stream_sid", "session_id", "policies", "model", "tool", "outcome"}
)  # fmt: skip
_DIGIT_FIELDS = frozenset({"digit", "digits"})


def scrub(text: str) -> str:
    text = _EMAIL.sub("[email]", text)
    text = _CARD.sub("[card]", text)
    return _PHONE.sub("[phone]", text)


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_value(v) for v in value]
    return value


def redact_pii(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event_dict.items():
        if key in _KEEP:
            continue
        event_dict[key] = "*" if key in _DIGIT_FIELDS else _scrub_value(value)
    return event_dict
