"""Text from outside in the log (issue 14, item 7): ids are redacted when they do not look like
ids, OpenAI project keys are masked, every string is capped, and one connection's junk frames
cannot turn into thousands of log lines. Unit checks of infra/redact.py and infra/logs.py, then
the real service writing its JSON log."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog

from infra.logs import LogBudget, configure_logging
from infra.redact import MAX_FIELD_CHARS, cap_lengths, redact_pii, redact_secrets, safe_id
from infra.settings import Settings
from tests.support.logs import read_log
from tests.support.twilio import closed_with, media_url, start_frame
from tests.support.waits import wait_until

PII_SID = "jane.doe@example.com 4111 1111 1111 1111 +1 415 555 0199"
PROJECT_KEY = "sk-proj-" + "Ab3_xY-9kQ" * 12


def _redacted(event: dict[str, Any]) -> dict[str, Any]:
    return dict(cap_lengths(None, "info", redact_pii(None, "info", redact_secrets(None, "info", event))))


@pytest.mark.parametrize(
    "value", ["CA" + "1" * 32, "ws_0a1b2c3d4e5f", "rtc_abc", "item_9", "returns@3", "^", "", "unknown"]
)
def test_ids_that_look_like_ids_pass(value: str) -> None:
    assert safe_id(value) == value
    assert _redacted({"event": "x", "call_id": value, "where": value})["call_id"] == value


@pytest.mark.parametrize("value", [PII_SID, "x" * 60_000, PROJECT_KEY, "4155550199", "a b", "CA1\n{"])
def test_ids_from_outside_are_redacted_when_they_are_not_ids(value: str) -> None:
    out = _redacted({"event": "twilio.stream_rejected", "call_id": value, "policies": [value]})
    assert out["call_id"] == f"[redacted id, {len(value)} chars]"
    assert out["policies"] == [out["call_id"]]


def test_an_ids_verdict_is_kept_for_short_strings_only() -> None:
    """safe_id remembers what it decided about a short string (a call's id is on every line),
    the same verdict twice, and never keeps a string longer than an id can be."""
    from infra.redact import ID_MAX_CHARS, _id_is_safe

    _id_is_safe.cache_clear()
    for _ in range(2):
        assert safe_id("CA" + "2" * 32) == "CA" + "2" * 32
        assert safe_id(PROJECT_KEY[:60]) == "[redacted id, 60 chars]"
    assert _id_is_safe.cache_info().currsize == 2 and _id_is_safe.cache_info().hits == 2
    assert safe_id("a" * (ID_MAX_CHARS + 1)) == f"[redacted id, {ID_MAX_CHARS + 1} chars]"
    assert safe_id("a" * ID_MAX_CHARS) == "a" * ID_MAX_CHARS
    assert _id_is_safe.cache_info().currsize == 3  # the long one was never looked up


def test_project_keys_are_masked_and_long_strings_capped() -> None:
    out = _redacted({"event": "x", "error": f"bad key {PROJECT_KEY}", "b": f"OPENAI_KEY_{PROJECT_KEY}"})
    assert PROJECT_KEY[:12] not in json.dumps(out)
    long = _redacted({"event": "x", "text": "y" * 60_000, "nested": {"t": ["z" * 60_000]}})
    assert len(long["text"]) < MAX_FIELD_CHARS + 40 and long["text"].endswith("more chars]")
    assert len(long["nested"]["t"][0]) < MAX_FIELD_CHARS + 40


def test_log_budget_logs_the_first_then_counts() -> None:
    now = [0.0]
    budget = LogBudget(burst=3, per_s=1.0, clock=lambda: now[0])
    assert [budget.allow() for _ in range(5)] == [True, True, True, False, False]
    now[0] = 1.0
    assert budget.allow() and not budget.allow()
    assert budget.take_suppressed() == 3 and budget.take_suppressed() == 0


def test_let_through_gives_how_many_were_left_out_before_the_line() -> None:
    now = [0.0]
    budget = LogBudget(burst=1, per_s=1.0, clock=lambda: now[0])
    assert [budget.let_through() for _ in range(4)] == [0, None, None, None]
    now[0] = 1.0
    assert budget.let_through() == 3 and budget.let_through() is None


@pytest.fixture
def json_log(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "logs" / "service.jsonl"
    configure_logging("json", "INFO", redact=True, log_file=path)
    yield path
    configure_logging("console", "INFO")  # closes the file
    structlog.reset_defaults()


async def test_unauthenticated_frames_reach_the_log_scrubbed_capped_and_few(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings], json_log: Path
) -> None:
    """Was: the start frame's callSid logged verbatim as call_id (e-mail, card, phone; a 60 KB
    one as a 60 KB line) and 3,000 junk frames as 3,001 log lines (here: 300)."""
    svc = await start_service(make_settings())
    forged = {"expires": "9999999999", "token": "0" * 64}
    async with aiohttp.ClientSession() as http:
        for call_sid in (PII_SID, "CA" + "9" * 60_000, PROJECT_KEY):
            async with http.ws_connect(media_url(svc), max_msg_size=0) as ws:
                await ws.send_str(start_frame(call_sid, forged))
                assert await closed_with(ws) == 1008
        async with http.ws_connect(media_url(svc)) as ws:
            for n in range(300):
                await ws.send_str(f"junk {n} {PII_SID}")
            await ws.send_str('{"event": "nonsense"}')
            await ws.close()

    async def logged() -> list[str] | None:  # the connection's summary is logged as it closes
        text = await read_log(json_log)
        return text.splitlines() if "stream.invalid_frames_suppressed" in text else None

    lines: list[str] = await wait_until(logged, 5.0, 0.05, what="the junk frames' summary line")
    text = "\n".join(lines)
    for secret in ("jane.doe", "4111 1111", "415 555", PROJECT_KEY[:16], "9" * 200):
        assert secret not in text, secret
    assert max(len(line) for line in lines) < 20_000
    events = [json.loads(line) for line in lines]
    rejected = [e for e in events if e["event"] == "twilio.stream_rejected"]
    assert [e["call_id"] for e in rejected] == [
        f"[redacted id, {len(PII_SID)} chars]", "[redacted id, 60002 chars]",
        f"[redacted id, {len(PROJECT_KEY)} chars]",
    ]  # fmt: skip
    junk = [e for e in events if e["event"] in ("twilio.frame_invalid", "twilio.event_ignored")]
    assert 1 <= len(junk) <= 12, len(junk)
    [summary] = [e for e in events if e["event"] == "stream.invalid_frames_suppressed"]
    assert summary["transport"] == "twilio" and summary["count"] == 301 - len(junk)
