"""Log redaction sees every inbound string that gets logged (transcripts, tool arguments,
rejected webhook URLs, realtime error messages): it must never raise, and never take time
quadratic in the length of what it scrubs (the event loop that runs every call waits for it)."""

from __future__ import annotations

import re
import time
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from infra.redact import _SECRETS, fold, redact_pii, redact_secrets, scrub, scrub_secrets
from tests.fuzz.strategies import json_values

# the e-mail pattern before the fix: same matches, quadratic on long runs without an "@"
_OLD_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_OLD_CARD = re.compile(r"(?<!\w)(?:\d[ -]?){12,18}\d(?!\w)")
_OLD_PHONE = re.compile(r"(?<![\w])(?:\+|\()?\d(?:[\s().-]*\d){6,14}(?![\w])")
emailish = st.text(st.sampled_from("ab1.+-_@ é(\n"), max_size=60)


def _old_scrub(text: str) -> str:
    text = text if text.isascii() else fold(text)  # what the patterns see of non-ASCII text
    text = _OLD_EMAIL.sub("[email]", text)
    text = _OLD_CARD.sub("[card]", text)
    return _OLD_PHONE.sub("[phone]", text)


@settings(max_examples=300, deadline=None)
@given(emailish | st.text(max_size=60))
@example("write to ana.b+x@mail.example.com or call +1 (555) 010-0123")
@example("x.@y.z")
def test_scrub_masks_exactly_what_it_did_before(text: str) -> None:
    assert scrub(text) == _old_scrub(text)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["text", "token", "digit", "url", "arguments"]) | st.text(max_size=8),
                       json_values, max_size=4))  # fmt: skip
def test_redaction_never_raises(fields: dict[str, Any]) -> None:
    event: dict[str, Any] = {"event": "fuzz", **fields}
    out = redact_pii(None, "info", redact_secrets(None, "info", dict(event)))
    assert set(out) == set(event)


def test_long_inbound_strings_are_scrubbed_in_linear_time() -> None:
    """64 KiB (one frame) of each shape that made the old e-mail pattern rescan the whole run
    from every position (13-30 s each); now each takes milliseconds."""
    n = 64 * 1024
    for text in ["1" * n, "é" * n, "a." * (n // 2), "ab" * (n // 2), "a@" * (n // 2), "(1" * (n // 2)]:
        started = time.perf_counter()
        redact_pii(None, "info", redact_secrets(None, "info", {"event": "x", "text": text}))
        elapsed = time.perf_counter() - started
        assert elapsed < 1.0, (text[:10], elapsed)


# -- the prefilters: the same result as every substitution run unconditionally --------------------
_pieces = st.sampled_from(
    ["sk-", "sk-proj-abcdefgh12", "Bearer ", "basic ", "Authorization: ", "authorization=", "whsec_",
     "?token=", "&key=", "0123456789abcdef" * 2, "deadbeef" * 5, "a@b.co", "+1 (555) 010-0123",
     "4111 1111 1111 1111", "4222222222222", "555 0100", "555 010", "x", " ", "_", "-", "9", "é",
     "\n", "CA" + "0" * 32,
     "AUTHORİZATION: ", "\u212a", "\u0663" * 8, "BaSiC "]
)  # fmt: skip
secretish = st.lists(_pieces, max_size=8).map("".join)


def _every_secret_sub(text: str) -> str:
    text = text if text.isascii() else fold(text)
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


@settings(max_examples=400, deadline=None)
@given(secretish | st.text(max_size=60))
@example("Authorization: Bearer abcdefghijkl")
@example("BEARER abcdefghijkl")
@example("card 4222222222222, phone 555 0100")
def test_prefiltered_scrubbing_equals_every_substitution(text: str) -> None:
    assert scrub_secrets(text) == _every_secret_sub(text)
    assert scrub(text) == _old_scrub(text)
