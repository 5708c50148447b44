"""Redaction of log events: secrets always, personal data (PII) by setting.

Two structlog processors:

- :func:`redact_secrets` is always on: API keys (``sk-…``), webhook secrets (``whsec_…``),
  Twilio auth tokens (32 hex digits), ``Authorization`` header values and any field whose
  name says it holds a secret become ``[secret]``.
- :class:`KnownSecrets` masks the configured secret values themselves (the OpenAI key, the
  admin, editor and viewer tokens, ``RESPONDER_SESSION_SECRET`` …) wherever they appear,
  whatever their shape.
- :func:`redact_pii` (``RESPONDER_LOG_REDACT_PII``, on by default) masks phone numbers,
  e-mail addresses, card numbers and key presses.
- :func:`cap_lengths` (last) cuts any string longer than :data:`MAX_FIELD_CHARS`.

Identifiers (call, item, decision ids …), the event name, level and timestamp are not scrubbed;
every other string, nested ones included, is. Ids come from outside too (a media stream's
``callSid``, a webhook's ``CallSid``), so an id is logged as it is only when it has an id's
shape and nothing in it looks like a secret or personal data; otherwise it is replaced by
``[redacted id, N chars]`` (:func:`safe_id`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, MutableMapping
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, SecretStr

# starts only where a run of local-part characters starts: without the lookbehind every position
# of a long run without an "@" rescans the rest of it (quadratic: 13 s for a 70 KB string)
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_CARD = re.compile(r"(?<!\w)(?:\d[ -]?){12,18}\d(?!\w)")
_PHONE = re.compile(r"(?<![\w])(?:\+|\()?\d(?:[\s().-]*\d){6,14}(?![\w])")
_SECRETS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b(authorization\s*[:=]\s*)(?:(?:bearer|basic)\s+)?[^\s,;\"']+"), r"\1[secret]"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 [secret]"),
    # OpenAI keys: sk-…, sk-proj-…, sk-svcacct-… (also right after an "_" or a digit)
    (re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_-]{8,}"), "[secret]"),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]{8,}"), "[secret]"),
    (re.compile(r"(?i)([?&](?:token|access_token|key|secret)=)[^&\s\"']+"), r"\1[secret]"),  # URL query
    # Twilio auth tokens (32 hex digits), live-view tokens (40), hex HMACs and keys (64); not a
    # Twilio SID (CA… + 32 = 34 characters)
    (re.compile(r"(?<![\w])(?:[0-9a-fA-F]{64}|[0-9a-fA-F]{40}|[0-9a-fA-F]{32})(?![\w])"), "[secret]"),
)
# Cheap necessary conditions, one per pattern above, checked before it runs: most logged
# strings hold no secret and no personal data, and each ``sub`` scans the whole string (the
# nine of them cost ~240 µs of the event loop for an 850-character answer, ~110 µs per log
# line). Each is a substring test or a digit count that every match of its pattern needs, on
# ASCII text only, where ``lower()`` and ``\d`` mean what the patterns' IGNORECASE and ``\d``
# mean; other text runs every pattern, as before (BENCHMARKS.md, issue 15).
_HEX_RUN = re.compile(r"[0-9a-fA-F]{32}")
_SECRET_HINTS: tuple[Callable[[str, str], bool], ...] = (
    lambda text, low: "authorization" in low,
    lambda text, low: "bearer" in low or "basic" in low,
    lambda text, low: "sk-" in text,
    lambda text, low: "whsec_" in text,
    lambda text, low: "=" in text,
    lambda text, low: _HEX_RUN.search(text) is not None,
)


def _digits(text: str) -> int:
    return sum(map(text.count, "0123456789"))


_SECRET_FIELDS = frozenset(
    {"authorization", "api_key", "apikey", "auth_token", "token", "secret", "password", "admin_token",
     "openai_api_key", "twilio_auth_token", "webhook_secret", "cookie", "set-cookie", "x-api-key"}
)  # fmt: skip
_SECRET_SUFFIXES = ("_api_key", "_auth_token", "_secret", "_password")
_KEEP = frozenset(
    {"event", "level", "timestamp", "logger", "call_id", "decision_id", "item_id", "tool_call_id",
     "user_item_id", "response_id", "stream_sid", "session_id", "policies", "model", "tool", "outcome",
     "previous_item_id", "where", "action_id"}
)  # fmt: skip
# a transfer's destination is the operator's configured number, not the caller's: secrets are
# still scrubbed from it, personal data rules do not apply
_PII_KEEP = _KEEP | {"target"}
# so are the addresses on the startup lines, the operator's configuration (an IPv4 address looks
# like a phone number); on those lines only, since a request's url elsewhere is the client's
_STARTUP_EVENTS = frozenset(
    {"app.ready", "app.bind_failed", "supervisor_service.listening", "simulator.ready"}
)
_STARTUP_KEEP = _PII_KEEP | {
    "host", "url", "twilio_voice_webhook", "twilio_media_stream", "sip_webhook", "supervisor_service",
}  # fmt: skip
_DIGIT_FIELDS = frozenset({"digit", "digits"})
SECRET = "[secret]"
# what an identifier looks like (Twilio SIDs, ws_/rtc_ call ids, item_…, id@version labels, "^")
ID_MAX_CHARS = 128
_ID = re.compile(rf"[A-Za-z0-9_.:@/+=^-]{{0,{ID_MAX_CHARS}}}")
MAX_FIELD_CHARS = 16_384  # one logged string (a decision's context is at most 16,000 characters)
_UNCAPPED = frozenset({"event", "level", "timestamp"})


# invisible format characters (zero-width space and joiners, word joiner, soft hyphen, BOM,
# bidirectional controls) and dashes that are not "-": inside a key or a number they would hide
# it from the patterns
_INVISIBLE = re.compile("[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_DASHES = re.compile("[\u2010-\u2015\u2212]")


def fold(text: str) -> str:
    """Non-ASCII text as the patterns see it, and as it is logged: compatibility forms folded
    (NFKC: fullwidth ``ｓｋ-`` is ``sk-``, fullwidth digits are digits), invisible format
    characters removed, every dash a ``-``."""
    return _DASHES.sub("-", _INVISIBLE.sub("", unicodedata.normalize("NFKC", text)))


def scrub(text: str) -> str:
    """Mask e-mails, card numbers and phone numbers in ``text``."""
    if not text.isascii():
        text = fold(text)
        return _PHONE.sub("[phone]", _CARD.sub("[card]", _EMAIL.sub("[email]", text)))
    if "@" in text:
        text = _EMAIL.sub("[email]", text)
    digits = _digits(text)
    if digits >= 13:  # a card number has 13 to 19 digits
        text = _CARD.sub("[card]", text)
        digits = _digits(text)
    return _PHONE.sub("[phone]", text) if digits >= 7 else text  # a phone number 7 to 15


def scrub_secrets(text: str) -> str:
    """Mask anything shaped like a credential in ``text``."""
    if not text.isascii():
        text = fold(text)
        for pattern, replacement in _SECRETS:
            text = pattern.sub(replacement, text)
        return text
    low = text.lower()
    for (pattern, replacement), could_match in zip(_SECRETS, _SECRET_HINTS, strict=True):
        if could_match(text, low):
            scrubbed = pattern.sub(replacement, text)
            if scrubbed != text:
                text, low = scrubbed, scrubbed.lower()
    return text


def is_secret_field(name: str) -> bool:
    lowered = name.lower()
    return lowered in _SECRET_FIELDS or lowered.endswith(_SECRET_SUFFIXES)


def _walk(value: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {k: SECRET if is_secret_field(str(k)) else _walk(v, fn) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_walk(v, fn) for v in value]
    return value


def safe_id(value: Any) -> Any:
    """An identifier as it may be logged: itself if it has an id's shape and holds nothing
    shaped like a secret or personal data, else ``[redacted id, N chars]``."""
    if isinstance(value, list | tuple):
        return [safe_id(v) for v in value]
    if not isinstance(value, str) or (len(value) <= ID_MAX_CHARS and _id_is_safe(value)):
        return value
    return f"[redacted id, {len(value)} chars]"


@lru_cache(maxsize=4096)  # a call's id is on every line of it, an item's on a few: checked once
def _id_is_safe(value: str) -> bool:
    """The verdict of :func:`safe_id` on a string of at most :data:`ID_MAX_CHARS` (so that the
    cache holds at most 4096 short strings, however many a hostile client sends)."""
    return _ID.fullmatch(value) is not None and scrub(scrub_secrets(value)) == value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in event_dict.items():
        if key in _KEEP:
            if key not in _UNCAPPED:
                event_dict[key] = safe_id(value)
            continue
        event_dict[key] = SECRET if is_secret_field(key) else _walk(value, scrub_secrets)
    return event_dict


def redact_pii(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    keep = _STARTUP_KEEP if event_dict.get("event") in _STARTUP_EVENTS else _PII_KEEP
    for key, value in event_dict.items():
        if key in keep:
            continue
        event_dict[key] = "*" if key in _DIGIT_FIELDS else _walk(value, scrub)
    return event_dict


def _cap(text: str) -> str:
    if len(text) <= MAX_FIELD_CHARS:
        return text
    return f"{text[:MAX_FIELD_CHARS]}…[{len(text) - MAX_FIELD_CHARS} more chars]"


def cap_lengths(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """No logged string is longer than :data:`MAX_FIELD_CHARS` (plus a note of what was cut)."""
    for key, value in event_dict.items():
        if key not in _UNCAPPED:
            event_dict[key] = _walk(value, _cap)
    return event_dict


_MIN_KNOWN = 8  # shorter values would mask ordinary words; settings refuse such secrets anyway


def secret_values(settings: BaseModel) -> list[str]:
    """Every ``SecretStr`` value of a settings object (also inside dicts of them), longest first."""
    found: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name, None)
        values = value.values() if isinstance(value, dict) else [value]
        found += [v.get_secret_value() for v in values if isinstance(v, SecretStr)]
    return sorted({v for v in found if len(v) >= _MIN_KNOWN}, key=len, reverse=True)


class KnownSecrets:
    """A structlog processor masking the exact configured secret values in every field."""

    def __init__(self, values: Iterable[str]) -> None:
        ordered = sorted({v for v in values if len(v) >= _MIN_KNOWN}, key=len, reverse=True)
        self.pattern = re.compile("|".join(re.escape(v) for v in ordered)) if ordered else None

    def _mask(self, text: str) -> str:
        return self.pattern.sub(SECRET, text) if self.pattern is not None else text

    def __call__(
        self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if self.pattern is None:
            return event_dict
        for key, value in event_dict.items():
            if key not in ("event", "level", "timestamp"):
                event_dict[key] = _walk(value, self._mask)
        return event_dict
