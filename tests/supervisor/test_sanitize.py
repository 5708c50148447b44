from __future__ import annotations

import pytest

from supervisor.sanitize import to_speech


@pytest.mark.parametrize(
    ("raw", "speech", "citations"),
    [
        (
            "- **Per our Returns and Refunds policy:** Used tents can be returned within 60 days. "
            "[policy:returns@3]",
            "Per our Returns and Refunds policy: Used tents can be returned within 60 days.",
            ["returns@3"],
        ),
        (
            "## Your options\nYou have *two* options:\n"
            "1. Store credit\n2) A refund to your card【policy:returns@3】",
            "You have two options: Store credit. A refund to your card.",
            ["returns@3"],
        ),
        (
            "Expedited shipping is $14.95 [shipping@2]. "
            "Members ship free [policy:membership@5, policy:shipping@2].",
            "Expedited shipping is $14.95. Members ship free.",
            ["shipping@2", "membership@5"],
        ),
        (
            "See [our returns page](https://example.com/returns) or call `1-800-555-0100` "
            "(source: returns policy).",
            "See our returns page or call 1-800-555-0100.",
            ["returns policy"],
        ),
        (
            "* __Bold__ and _italic_ and ~~struck~~\n+ second item",
            "Bold and italic and struck. second item.",
            [],
        ),
        ("> Quoted answer.\n\n---\n\nAnything else?", "Quoted answer. Anything else?", []),
        ("Could you tell me your ZIP code?", "Could you tell me your ZIP code?", []),
        ("# Only a heading", "Only a heading.", []),
        ("Use snake_case_names and 3–5 business days.", "Use snake_case_names and 3–5 business days.", []),
        ("", "", []),
    ],
)
def test_to_speech(raw: str, speech: str, citations: list[str]) -> None:
    assert to_speech(raw) == (speech, citations)


def test_no_markup_survives_a_messy_answer() -> None:
    raw = """### Answer

**Yes.** Here's what applies:

- Opened *electronics*: 15% fee [policy:returns@3]
- Refunds in `5–7` business days【source: returns@3】

```
ignored fence markers
```
"""
    text, citations = to_speech(raw)
    assert citations == ["returns@3"]
    for mark in ("#", "*", "`", "[", "]", "【", "- ", "policy:", "\n"):
        assert mark not in text
    assert text.startswith(
        "Yes. Here's what applies: Opened electronics: 15% fee. Refunds in 5–7 business days."
    )
