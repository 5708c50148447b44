"""Log lines are written by a thread of their own, never by the event loop.

A log event is rendered where it happens (redaction, the length cap, JSON), then queued; one
writer thread puts the queued lines on stderr (and in the JSON log file, when there is one),
a batch at a time with one flush per batch. A pipe nobody reads fast enough (a container's
log driver, a stuck terminal) or a slow disk then delays the log, not the calls. The queue is
bounded: while it is full, new lines are dropped and counted, and once the writer catches up
it logs how many (``log.lines_dropped``), so that a stalled log costs memory only up to the
bound and its gap is visible.
"""

from __future__ import annotations

import atexit
import queue
import threading
from typing import Final, Literal, TextIO

import structlog

MAX_QUEUED_LINES: Final = 20_000
BATCH_LINES: Final = 512
CLOSE_TIMEOUT_S: Final = 2.0

Target = Literal["stream", "file"]
_STOP: Final = ("stop", "")

log = structlog.get_logger("log")


class LogWriter:
    """The writer thread and its bounded queue of ``(target, line)``."""

    def __init__(self, stream: TextIO, file: TextIO | None = None, max_lines: int = MAX_QUEUED_LINES) -> None:
        self._targets: dict[str, TextIO] = {"stream": stream}
        if file is not None:
            self._targets["file"] = file
        self._queue: queue.Queue[tuple[str, str]] = queue.Queue(max_lines)
        self._dropped = 0
        self._dropped_lock = threading.Lock()
        self._closed = False
        self._own: list[tuple[str, str]] = []
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    def write(self, target: Target, line: str) -> None:
        """Queue one line (never blocks); dropped and counted while the queue is full."""
        if threading.current_thread() is self._thread:  # the writer's own report: no queue
            self._own.append((target, line))
            return
        if self._closed:
            return
        try:
            self._queue.put_nowait((target, line))
        except queue.Full:
            with self._dropped_lock:
                self._dropped += 1

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Write what is queued (up to ``timeout_s``) and stop the thread."""
        if self._closed:
            return
        self._closed = True
        try:
            self._queue.put(_STOP, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < BATCH_LINES:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = _STOP in batch
            self._write_batch([entry for entry in batch if entry != _STOP])
            self._report_dropped()
            for _ in batch:
                self._queue.task_done()
            if stop:
                return

    def _write_batch(self, batch: list[tuple[str, str]]) -> None:
        touched: set[str] = set()
        for target, line in batch:
            out = self._targets.get(target)
            if out is None:
                continue
            try:
                out.write(line + "\n")
            except (OSError, ValueError):  # a closed or broken stream: the line is lost
                continue
            touched.add(target)
        for target in touched:
            try:
                self._targets[target].flush()
            except (OSError, ValueError):
                pass

    def _report_dropped(self) -> None:
        with self._dropped_lock:
            dropped, self._dropped = self._dropped, 0
        if dropped:
            log.warning("log.lines_dropped", count=dropped)  # rendered into self._own
            own, self._own = self._own, []
            self._write_batch(own)

    def flush(self, timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
        """Wait until every line queued so far is written (tests, ``responder trace``)."""
        done = threading.Event()
        waiter = threading.Thread(target=lambda: (self._queue.join(), done.set()), daemon=True)
        waiter.start()
        return done.wait(timeout_s)


_current: LogWriter | None = None


def start_writer(stream: TextIO, file: TextIO | None = None, max_lines: int = MAX_QUEUED_LINES) -> LogWriter:
    """The process's writer (replacing, and draining, the previous one)."""
    global _current
    stop_writer()
    _current = LogWriter(stream, file, max_lines)
    return _current


def flush_writer(timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
    return _current.flush(timeout_s) if _current is not None else True


def stop_writer() -> None:
    global _current
    if _current is not None:
        _current.close()
        _current = None


atexit.register(stop_writer)  # what was logged before exit is written


class QueuedLogger:
    """structlog's logger: every level puts the rendered line on the writer's queue."""

    def __init__(self, writer: LogWriter) -> None:
        self._writer = writer

    def msg(self, message: str) -> None:
        self._writer.write("stream", message)

    log = debug = info = warn = warning = error = critical = exception = fatal = failure = msg


class QueuedLoggerFactory:
    def __init__(self, writer: LogWriter) -> None:
        self._writer = writer

    def __call__(self, *args: object) -> QueuedLogger:
        return QueuedLogger(self._writer)
