"""Server text frames written straight to an aiohttp WebSocket's transport, several in one write.

The Twilio transport sends a ``media`` frame for every model delta (50 a second a call with
20 ms deltas) and a ``mark`` after some of them. Through ``WebSocketResponse.send_str`` each is
two coroutines (``send_str``, the writer's ``send_frame``) and its own ``transport.write`` (a
``send`` system call, which on a local link also runs the peer's receive path). What
``send_frame`` does for an uncompressed text frame is exactly this: a 2- or 4-byte header (a
server's frames are not masked, RFC 6455 §5.1) and the payload, written at once. So
:meth:`FrameWriter.write_now` builds the frames of one delta itself and writes them with one
call, whenever that is all ``send_str`` would do:

* the response is prepared, not closing or closed, its transport open;
* no compression (permessage-deflate keeps state across frames: aiohttp's writer owns it);
* nothing is waiting in the transport's buffer (the socket took all of the last write): a
  client that stops reading gets at most one write from here before ``send_str`` takes over,
  whose accounting (``writer_limit``) and drain bound what piles up, as they did before;
* every frame under 64 KiB (a 2- or 4-byte length).

Otherwise it writes nothing and answers False, and the caller awaits ``send_str`` as before.
The writes stay in order with aiohttp's own: an uncompressed ``send_str`` writes to the
transport synchronously too. Feature-detected: an aiohttp without these internals gets None
from :func:`frame_writer`, and ``send_str`` for everything.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from aiohttp import web

TEXT_FIN: Final = 0x81  # FIN + opcode 1 (text)
_LEN16: Final = struct.Struct("!BBH")
MAX_FRAME: Final = 0xFFFF  # the largest payload with a 16-bit length


def text_frame(data: bytes) -> bytes | None:
    """One unmasked, unfragmented text frame of ``data``; None when it is 64 KiB or more."""
    size = len(data)
    if size < 126:
        return bytes((TEXT_FIN, size)) + data
    if size <= MAX_FRAME:
        return _LEN16.pack(TEXT_FIN, 126, size) + data
    return None


class FrameWriter:
    """Writes whole text frames to one prepared ``WebSocketResponse``, bypassing its coroutines."""

    def __init__(self, ws: web.WebSocketResponse, writer: Any) -> None:
        self._ws = ws
        self._writer = writer

    def write_now(self, *texts: str) -> bool:
        """Write ``texts`` as consecutive text frames in one ``transport.write``: True; False
        when ``send_str`` must be used instead (nothing was written)."""
        return self.ready() and self.write(*texts)

    def ready(self) -> bool:
        """Whether :meth:`write` may be used now (frames under 64 KiB then go out)."""
        writer = self._writer
        transport = writer.transport
        return not (
            writer.compress or writer._closing or self._ws.closed or transport is None
            or transport.is_closing() or writer.protocol._paused or transport.get_write_buffer_size()
        )  # fmt: skip

    def write(self, *texts: str) -> bool:
        """After :meth:`ready`: the frames in one write; False (nothing written) when one is
        64 KiB or more."""
        frames = [text_frame(text.encode()) for text in texts]
        if None in frames:
            return False
        self._writer.transport.write(b"".join(frames))  # type: ignore[arg-type]  # no None: checked above
        return True


def frame_writer(ws: web.WebSocketResponse) -> FrameWriter | None:
    """A :class:`FrameWriter` for a prepared response; None when aiohttp's internals are not
    the ones this was written against (or the response is not prepared)."""
    writer = getattr(ws, "_writer", None)
    names = ("transport", "protocol", "compress", "_closing")  # what write_now reads
    if writer is None or not all(hasattr(writer, n) for n in names):
        return None
    if not hasattr(writer.protocol, "_paused"):
        return None
    return FrameWriter(ws, writer)
