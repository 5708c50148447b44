"""infra/logs.py: records of the standard logging module (aiohttp, asyncio) go through structlog
and the writer thread, never straight to stderr from the thread that logs them."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from infra.logs import configure_logging, flush_logs
from tests.support.logs import StalledStream

KEY = "sk-proj-" + "a1B2" * 10


def _aiohttp_error(n: int) -> None:
    try:
        raise ValueError(f"400, message: Invalid header token: b'Authorization: Bearer {KEY}' #{n}")
    except ValueError:
        logging.getLogger("aiohttp.server").exception("Error handling request from %s", "127.0.0.1")


def test_a_library_record_is_queued_for_the_writer_not_written_by_the_logging_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = StalledStream()  # stderr nobody reads: a write from this thread would block on it
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # as in the service: none (not pytest's)
    configure_logging("json", "INFO")
    try:
        _aiohttp_error(0)
        assert "MainThread" not in stream.writers  # before: the last-resort handler wrote here
        for n in range(1, 500):  # any client can repeat it: a budget, not one line each
            _aiohttp_error(n)
        stream.gate.set()
        assert flush_logs()
    finally:
        configure_logging("console", "INFO")
    assert stream.writers == {"log-writer"}
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert {line["event"] for line in lines} == {"lib.logged"}
    assert 1 <= len(lines) <= 25
    first = lines[0]
    assert first["logger"] == "aiohttp.server" and first["record_level"] == "error"
    assert first["message"] == "Error handling request from 127.0.0.1"
    assert "ValueError" in first["error"] and KEY not in stream.getvalue()
