"""Reading the JSON log a test configured (once it is written), and a stderr that stalls."""

from __future__ import annotations

import asyncio
import io
import threading
from pathlib import Path

from infra.logs import flush_logs


async def read_log(path: Path) -> str:
    """The log file's text after the writer thread has written everything queued."""
    assert await asyncio.to_thread(flush_logs), "the log writer did not catch up"
    return await asyncio.to_thread(path.read_text, encoding="utf-8")


class StalledStream(io.StringIO):
    """A stderr whose writes wait for ``gate`` (a pipe nobody reads), noting which threads wrote."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.writers: set[str] = set()

    def write(self, text: str) -> int:
        self.writers.add(threading.current_thread().name)
        self.gate.wait(5.0)
        return super().write(text)
