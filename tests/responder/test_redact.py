from __future__ import annotations

import pytest

from responder.redact import redact_pii, scrub


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call me at +1 (555) 555-0123 please", "call me at [phone] please"),
        ("my number is 555.555.0199", "my number is [phone]"),
        ("card 4111 1111 1111 1111 exp", "card [card] exp"),
        ("card 4111-1111-1111-1111", "card [card]"),
        ("mail jo.rivera+shop@example.co.uk now", "mail [email] now"),
        ("order NW-4412 for 2 tents, $14.95, 60 days", "order NW-4412 for 2 tents, $14.95, 60 days"),
        ("ZIP 94110", "ZIP 94110"),
    ],
)
def test_scrub(text: str, expected: str) -> None:
    assert scrub(text) == expected


def test_processor_keeps_ids_and_scrubs_nested_values() -> None:
    event = {
        "event": "supervisor.decision",
        "call_id": "CA5555550123555",
        "text": "Your account +15555550123 has 2 orders",
        "tool_calls": [{"arguments": {"phone_number": "+15555550123"}}],
        "digit": "7",
        "ms": 12.5,
    }
    out = redact_pii(None, "info", dict(event))
    assert out["call_id"] == event["call_id"]
    assert out["text"] == "Your account [phone] has 2 orders"
    assert out["tool_calls"] == [{"arguments": {"phone_number": "[phone]"}}]
    assert out["digit"] == "*" and out["ms"] == 12.5
