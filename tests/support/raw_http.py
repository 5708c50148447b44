"""HTTP as a misbehaving client speaks it, over a raw socket: bytes no client library sends
(header values that are not UTF-8), headers dribbled a line at a time."""

from __future__ import annotations

import asyncio
import json
from typing import Any


async def raw_request(port: int, data: bytes, timeout_s: float = 5.0) -> bytes:
    """Send ``data`` as it is; everything the service answers until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(timeout_s):
            return await reader.read()
    finally:
        writer.close()


def status_and_json(raw: bytes) -> tuple[int, Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


async def dribble_headers(port: int, lines: int = 12, gap_s: float = 0.25) -> tuple[bytes, float]:
    """A GET whose header lines come ``gap_s`` apart (complete after ``lines * gap_s``, if the
    service waits that long): what the service answered, and after how many seconds it did or
    closed the connection."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = loop.time()
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        answer = asyncio.create_task(reader.read())
        for n in range(lines):
            if answer.done():
                break
            await asyncio.sleep(gap_s)
            writer.write(f"X-Dribble-{n}: 1\r\n".encode())
        if not answer.done():
            writer.write(b"Connection: close\r\n\r\n")
        received = await asyncio.wait_for(answer, 5.0)
        return received, loop.time() - started
    finally:
        writer.close()
