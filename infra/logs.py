"""structlog configuration: JSON in production, console in development, optionally a JSON file.

Every event goes through the same chain: context variables (``call_id``, ``decision_id``),
level, UTC ISO timestamp, secret redaction (always: the configured secret values and
anything shaped like a credential; ids that do not look like ids), PII redaction (by
setting), a length cap on every string (see redact.py), then the renderer. With ``log_file``
set, each event is also appended to that file as one JSON line — whatever the console format
— which is what ``responder trace CALL_ID --log FILE`` reads. Lines are written by a thread
(:mod:`infra.log_writer`), not by the event loop.

Records of the standard ``logging`` module (aiohttp, asyncio, warnings) take the same way as
``lib.logged`` events (:class:`StdlibHandler`). Left to Python's last-resort handler, each was
written, traceback and all, straight to stderr by the thread that logged it — the event loop —
and anyone can make aiohttp log one (a request with a malformed header line): a stalled stderr
pipe froze the service after about a hundred such requests, and what the client sent reached
the log unredacted and without a bound.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterable, MutableMapping
from pathlib import Path
from typing import Any, Literal, TextIO

import structlog

from infra.log_writer import LogWriter, QueuedLoggerFactory, flush_writer, start_writer, stop_writer
from infra.redact import KnownSecrets, cap_lengths, redact_pii, redact_secrets


class JsonFileSink:
    """A structlog processor that queues the event as one JSON line for the log file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file: TextIO = self.path.open("a", encoding="utf-8")
        self.writer: LogWriter | None = None

    def __call__(
        self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if self.writer is not None:
            self.writer.write("file", json.dumps(dict(event_dict), default=str))
        return event_dict

    def close(self) -> None:
        self.file.close()


class LogBudget:
    """How much of one repeated event is logged: the first ``burst`` occurrences, then ``per_s``
    a second; the rest are only counted (:meth:`take_suppressed`), for one summary line. What
    an outside party can repeat at will (junk frames, refused sockets) is logged through one, so
    that it cannot turn every packet into a log line."""

    def __init__(
        self, burst: int = 10, per_s: float = 0.1, clock: Callable[[], float] = time.monotonic,
        *, from_first: bool = False,
    ) -> None:  # fmt: skip
        """``from_first``: the refill starts at the first event, not now (events passed in with
        their own earlier times, as key presses buffered before a call's session came up)."""
        self.burst = float(burst)
        self.per_s = per_s
        self._clock = clock
        self._tokens = float(burst)
        self._updated: float | None = None if from_first else clock()
        self.suppressed = 0

    def allow(self, at: float | None = None) -> bool:
        """Whether one more may go; ``at``: when it happened (default now, on ``clock``'s
        scale). An earlier time than one already seen adds no tokens."""
        now = self._clock() if at is None else at
        if self._updated is None:
            self._updated = now
        elif now > self._updated:
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.per_s)
            self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.suppressed += 1
        return False

    def let_through(self) -> int | None:
        """One more, if the budget allows: how many were left out before it (the line's
        ``suppressed`` field); None when this one is left out (and counted)."""
        return self.take_suppressed() if self.allow() else None

    def take_suppressed(self) -> int:
        """How many were not logged since the last call (and start counting again)."""
        count, self.suppressed = self.suppressed, 0
        return count


STDLIB_MESSAGE_CHARS = 300


class StdlibHandler(logging.Handler):
    """The root logger's handler: each ``logging`` record (WARNING and up) is logged as a
    ``lib.logged`` structlog event, within a budget, with how many were left out before it."""

    def __init__(self, budget: LogBudget | None = None) -> None:
        super().__init__(logging.WARNING)
        self.budget = budget if budget is not None else LogBudget(burst=20, per_s=1.0)
        self._log = structlog.get_logger("lib")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if not self.budget.allow():
                return
            try:
                message = record.getMessage()
            except (TypeError, ValueError):  # arguments that do not fit the format
                message = str(record.msg)
            fields: dict[str, object] = {
                "logger": record.name[:80],
                "record_level": record.levelname.lower(),
                "message": message[:STDLIB_MESSAGE_CHARS],
                "suppressed": self.budget.take_suppressed(),
            }
            if record.exc_info and record.exc_info[1] is not None:
                fields["error"] = repr(record.exc_info[1])[:STDLIB_MESSAGE_CHARS]
            self._log.warning("lib.logged", **fields)
        except Exception:  # a handler never raises into, nor writes past, the log
            pass


def route_stdlib_logging() -> StdlibHandler:
    """Put a :class:`StdlibHandler` on the root logger (replacing an earlier one), warnings too."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, StdlibHandler)]:
        root.removeHandler(old)
    handler = StdlibHandler()
    root.addHandler(handler)
    logging.captureWarnings(True)
    return handler


_sink: JsonFileSink | None = None


def configure_logging(
    fmt: Literal["json", "console"] = "console",
    level: str = "INFO",
    *,
    redact: bool = True,
    log_file: str | Path | None = None,
    secrets: Iterable[str] = (),
) -> None:
    """``secrets``: the configured secret values, masked wherever they appear (see redact.py)."""
    global _sink
    stop_writer()  # what the previous configuration queued is written first
    if _sink is not None:
        _sink.close()
        _sink = None
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(default=str)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    if log_file:
        _sink = JsonFileSink(log_file)
    writer = start_writer(sys.stderr, _sink.file if _sink is not None else None)
    if _sink is not None:
        _sink.writer = writer
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            KnownSecrets(secrets),
            redact_secrets,
            *([redact_pii] if redact else []),
            cap_lengths,
            *([_sink] if _sink is not None else []),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=QueuedLoggerFactory(writer),  # written off the event loop: log_writer.py
        cache_logger_on_first_use=False,
    )
    route_stdlib_logging()


def flush_logs(timeout_s: float = 2.0) -> bool:
    """Wait until every event logged so far is on stderr and in the log file."""
    return flush_writer(timeout_s)
