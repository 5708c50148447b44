"""Shared by the property tests (tests/fuzz): what the frame fuzzers send and must never see,
and a valid policy document to vary. The hypothesis strategies are in tests/fuzz/strategies.py."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

MAX_SENT = 60_000  # below the service's 64 KiB frame limit: bigger frames close the socket (tested apart)
# log events that mean a frame broke the call's loop
BAD_EVENTS = {"twilio.frame_failed", "call.event_handler_failed", "call.realtime_failed"}


def parse_json(raw: str) -> Any:
    """``raw`` as JSON, or ``None`` when it is not (or nested past the parser's patience)."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


VALID_META: dict[str, Any] = {
    "id": "returns",
    "title": "Returns",
    "version": 1,
    "tags": ["returns"],
    "owner": "Care",
    "effective_date": dt.date(2025, 3, 1),
    "status": "published",
}
POLICY_BODY = "# Returns\nIntro.\n## Window\nSixty days.\n"


def policy_document(meta_text: str, body: str = POLICY_BODY, *, newline: str = "\n") -> str:
    """A policy file: ``meta_text`` as its front matter, then ``body``."""
    return newline.join(["---", meta_text, "---", body])
