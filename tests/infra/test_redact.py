from __future__ import annotations

import json
from pathlib import Path

import pytest
import structlog

from infra.logs import configure_logging
from infra.redact import KnownSecrets, redact_pii, redact_secrets, scrub, scrub_secrets, secret_values
from infra.settings import Settings
from responder.runtime.view_token import view_token


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


def test_the_operators_addresses_on_startup_lines_are_not_taken_for_phone_numbers() -> None:
    """Before: ``app.bind_failed host=[phone]``: the line that says which address failed did not
    say it. Secrets in them are still masked (the other processor)."""
    event = {
        "event": "app.ready", "host": "203.0.113.5", "url": "http://203.0.113.5:8081",
        "twilio_voice_webhook": "http://203.0.113.5:8080/twilio/voice",
        "twilio_media_stream": "ws://203.0.113.5:8080/twilio/media",
        "sip_webhook": "http://203.0.113.5:8080/openai/sip", "text": "at 203.0.113.5",
    }  # fmt: skip
    out = redact_pii(None, "info", dict(event))
    assert {k: out[k] for k in event if k != "text"} == {k: v for k, v in event.items() if k != "text"}
    assert out["text"] != event["text"]  # elsewhere the number still goes
    # a client's url on any other line is the client's text: scrubbed
    rejected = {"event": "twilio.webhook_rejected", "url": "https://h/twilio/voice?From=+14155550123"}
    assert "+14155550123" not in redact_pii(None, "info", dict(rejected))["url"]
    masked = redact_secrets(None, "info", {"event": "redis.connected", "url": "redis://u:sk-abcdefghijklmnopqrstuvwx@h"})
    assert "sk-abcdefghijklmnopqrstuvwx" not in masked["url"]


@pytest.mark.parametrize(
    "text",
    [
        "call (555) 555-0123 now",
        "call 555-555-0123 now",
        "call +44 20 7946 0958 now",
        "call +15555550123 now",
        "call 1-800-555-0199 now",
    ],
)
def test_phone_formats(text: str) -> None:
    assert scrub(text) == "call [phone] now"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("key sk-proj-AbC123xyz_987654321 used", "key [secret] used"),
        ("webhook whsec_c2VjcmV0LXNpZ25pbmcta2V5 set", "webhook [secret] set"),
        ("token 0123456789abcdef0123456789abcdef ok", "token [secret] ok"),
        ("Authorization: Bearer eyJhbGciOi.abc.def", "Authorization: [secret]"),
        ("sent bearer abcdefghijklmnop", "sent bearer [secret]"),
        ("call CA0123456789abcdef0123456789abcdef kept", "call CA0123456789abcdef0123456789abcdef kept"),
        ("GET /calls/CA1/events?token=abc123def&x=1", "GET /calls/CA1/events?token=[secret]&x=1"),
        ("view 0123456789abcdef0123456789abcdef01234567 ok", "view [secret] ok"),  # 40-hex view token
    ],
)
def test_scrub_secrets(text: str, expected: str) -> None:
    assert scrub_secrets(text) == expected


def test_secrets_are_masked_by_field_name_and_nested_headers() -> None:
    event = {
        "event": "http.request",
        "api_key": "anything-at-all",
        "twilio_auth_token": "x",
        "headers": {"Authorization": "Basic dXNlcjpwYXNz", "Accept": "text/html"},
        "input_tokens": 12,  # a count, not a secret
    }
    out = redact_secrets(None, "info", dict(event))
    assert out["api_key"] == "[secret]" and out["twilio_auth_token"] == "[secret]"
    assert out["headers"] == {"Authorization": "[secret]", "Accept": "text/html"}
    assert out["input_tokens"] == 12


def test_log_file_gets_json_and_secrets_never_reach_it_even_without_pii_redaction(tmp_path: Path) -> None:
    path = tmp_path / "app.jsonl"
    try:
        configure_logging("console", "INFO", redact=False, log_file=path)
        log = structlog.get_logger("t").bind(call_id="CA1")
        log.info("call.user_turn", text="I'm jo@example.com, +1 555 555 0123", item_id="item_1")
        log.warning("realtime.error", message="bad key sk-live-0123456789abcdef")
        configure_logging("json", "INFO", redact=True, log_file=path)
        structlog.get_logger("t").info("call.user_turn", call_id="CA2", text="jo@example.com")
    finally:
        configure_logging("console", "INFO")
        structlog.reset_defaults()
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [e["event"] for e in lines] == ["call.user_turn", "realtime.error", "call.user_turn"]
    assert lines[0]["text"] == "I'm jo@example.com, +1 555 555 0123"  # PII redaction off
    assert lines[0]["call_id"] == "CA1" and lines[0]["timestamp"].endswith("Z")
    assert lines[1]["message"] == "bad key [secret]"  # secrets: always
    assert lines[2]["text"] == "[email]"  # PII redaction on


def test_configured_secrets_are_masked_whatever_their_shape() -> None:
    settings = Settings(
        admin_token="correct horse battery staple",
        editor_tokens={"ana": "ana-editor-token-1"},
        session_secret="s3ssion-secret-value",
        openai_api_key="not-shaped-like-a-key-0001",
    )
    values = secret_values(settings)
    assert {"correct horse battery staple", "ana-editor-token-1", "s3ssion-secret-value"} <= set(values)
    event = {
        "event": "editor.login",
        "note": "tried correct horse battery staple, then ana-editor-token-1",
        "nested": {"why": ["key not-shaped-like-a-key-0001 rejected"]},
        "call_id": "CA1",
    }
    out = KnownSecrets(values)(None, "info", dict(event))
    assert out["note"] == "tried [secret], then [secret]"
    assert out["nested"] == {"why": ["key [secret] rejected"]}
    assert out["call_id"] == "CA1" and out["event"] == "editor.login"


def test_live_view_tokens_never_reach_the_log_file(tmp_path: Path) -> None:
    """A view token derived from RESPONDER_SESSION_SECRET, in a URL or on its own."""
    path = tmp_path / "app.jsonl"
    token = view_token(b"s3ssion-secret-value", "CA9")
    try:
        configure_logging("json", "INFO", redact=True, log_file=path, secrets=["s3ssion-secret-value"])
        structlog.get_logger("t").warning(
            "web.request_failed", call_id="CA9", url=f"/calls/CA9/events?token={token}", token_seen=token
        )
    finally:
        configure_logging("console", "INFO")
        structlog.reset_defaults()
    text = path.read_text(encoding="utf-8")
    assert token not in text and "s3ssion" not in text
    (line,) = [json.loads(x) for x in text.splitlines()]
    assert line["url"] == "/calls/CA9/events?token=[secret]" and line["call_id"] == "CA9"


@pytest.mark.parametrize(
    "text",
    [
        "key sk-ab\u200dcdefghijklmnop",  # a zero-width joiner inside
        "key sk\u2011proj-abcdefghijkl",  # a non-breaking hyphen
        "key \uff53\uff4b-abcdefghijkl",  # fullwidth letters
        "card 4111\u200b1111\u200b1111\u200b1111",  # zero-width spaces between the groups
        "call \uff15\uff15\uff15 \uff10\uff11\uff10\uff10",  # fullwidth digits
        "Bearer\u00a0abcdefghijkl",  # a no-break space
    ],
)
def test_hidden_characters_do_not_hide_a_secret_or_a_number(text: str) -> None:
    """Review finding: invisible and compatibility characters kept a key or a card number out
    of the patterns' reach."""
    scrubbed = scrub(scrub_secrets(text))
    assert scrubbed.split(" ", 1)[1] in ("[secret]", "[card]", "[phone]")
    assert not any(ch.isdigit() for ch in scrubbed) and "abcdefghijkl" not in scrubbed


def test_plain_non_ascii_text_is_logged_as_it_was() -> None:
    assert scrub(scrub_secrets("été à Paris, réf. 42")) == "été à Paris, réf. 42"
