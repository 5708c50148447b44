"""infra/log_writer.py: log lines are written by a thread, and a stalled stream drops (and
counts) lines instead of stalling whoever logs."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import structlog

from infra.log_writer import LogWriter
from infra.logs import configure_logging
from tests.support.logs import StalledStream


def test_lines_are_written_in_order_by_the_writer_thread_not_by_the_caller() -> None:
    stream = StalledStream()
    writer = LogWriter(stream)
    for n in range(50):  # with the stream stuck, a synchronous write would block here
        writer.write("stream", f"line {n}")
    stream.gate.set()
    writer.close()
    assert stream.getvalue().splitlines() == [f"line {n}" for n in range(50)]
    assert stream.writers == {"log-writer"}


def test_a_stalled_stream_drops_lines_past_the_bound_and_says_how_many() -> None:
    stream = StalledStream()
    writer = LogWriter(stream, max_lines=5)
    configure_logging("json", "INFO")
    structlog.configure(logger_factory=lambda *_: _Forward(writer))  # the drop report: here
    try:
        writer.write("stream", "first")  # the writer thread takes it and waits on the gate
        _wait_for(lambda: bool(stream.writers))
        for n in range(20):
            writer.write("stream", f"line {n}")
        stream.gate.set()
        _wait_for(lambda: "lines_dropped" in stream.getvalue())
        writer.close()
    finally:
        configure_logging("console", "INFO")
    first, report, *rest = stream.getvalue().splitlines()
    assert first == "first" and rest == [f"line {n}" for n in range(5)]  # the bound: 5 queued
    dropped = json.loads(report)  # said as soon as the writer got going again
    assert dropped["event"] == "log.lines_dropped" and dropped["count"] == 15


def test_configured_logging_reaches_the_file_through_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    configure_logging("json", "INFO", log_file=path)
    structlog.get_logger("call").info("call.started", call_id="CAwriter01")
    configure_logging("console", "INFO")  # drains the writer, then closes the file
    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(e["event"], e["call_id"]) for e in events] == [("call.started", "CAwriter01")]


class _Forward:
    def __init__(self, writer: LogWriter) -> None:
        self._writer = writer

    def warning(self, message: str) -> None:
        self._writer.write("stream", message)

    msg = info = error = warning


def _wait_for(condition: object, timeout_s: float = 5.0) -> None:
    done = threading.Event()
    for _ in range(int(timeout_s / 0.01)):
        if condition():  # type: ignore[operator]
            return
        done.wait(0.01)
    raise AssertionError("condition not met in time")
