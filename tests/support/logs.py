"""Reading the JSON log a test configured: what was logged so far, once it is written."""

from __future__ import annotations

import asyncio
from pathlib import Path

from infra.logs import flush_logs


async def read_log(path: Path) -> str:
    """The log file's text after the writer thread has written everything queued."""
    assert await asyncio.to_thread(flush_logs), "the log writer did not catch up"
    return await asyncio.to_thread(path.read_text, encoding="utf-8")
