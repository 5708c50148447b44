"""A caller socket's text frames handled as they are parsed, when nothing is ahead of them.

aiohttp parses a WebSocket's frames in the connection's read callback and puts each message on
the socket's queue; the task reading the socket (``StreamTransport.serve``) is woken, and takes
it from there on its next turn of the event loop. For Twilio's media frames (50 a second a call)
that wake-up, ``receive()`` and the ``async for`` layer cost more than relaying the frame does.

:class:`SyncReadSocket` gives its socket a :class:`FrameQueue` instead of aiohttp's own: the
same queue, except that a text message offered while the reading task is *parked* in
``receive()`` with nothing queued (:attr:`FrameQueue.idle`, set by the reader around its wait)
is first offered to the reader's :attr:`FrameQueue.take`. ``take`` returns True when it handled
the frame there and then (a media frame relayed at once); otherwise the message is queued and
read as always. So every frame is handled once and in arrival order: a frame is never taken
while an earlier one is queued or still being handled. A frame that comes in a burst (the
reader is not parked) goes the usual way, and the reader's own loop bounds the work done per
loop turn as it did before (a parse is a parse either way: aiohttp's parser runs the whole read
in one callback regardless).

aiohttp builds its queue in a private method (``WebSocketResponse._post_start``).
:class:`SyncReadSocket` overrides it only when the installed aiohttp has the shape it was
written against (:data:`SUPPORTED`); otherwise it is a plain ``WebSocketResponse`` and frames
take the queue's path. ``tests/responder/transports/test_frame_queue.py`` fails if the
installed aiohttp no longer allows the override, so an upgrade cannot silently lose it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Final

from aiohttp import WSMsgType, web
from aiohttp._websocket.reader import WebSocketDataQueue, WebSocketReader
from aiohttp.helpers import DEFAULT_CHUNK_SIZE

Take = Callable[[str], bool]  # a text frame → handled there and then


class FrameQueue(WebSocketDataQueue):  # type: ignore[misc]  # aiohttp's (Cython) class
    """aiohttp's message queue, offering a text message to :attr:`take` first when it is safe."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.take: Take | None = None
        self.idle = False  # the reader is waiting in receive() and has handled every earlier message
        self.taken = 0

    def feed_data(self, data: Any, size: int) -> None:
        take = self.take
        if (
            take is not None and self.idle and not self._buffer
            and data[0] is WSMsgType.TEXT and take(data[1])
        ):  # fmt: skip
            self.taken += 1
            return
        super().feed_data(data, size)


def _supported() -> bool:
    """Whether this aiohttp builds its queue the way :meth:`SyncReadSocket._post_start` does."""
    try:
        names = list(inspect.signature(web.WebSocketResponse._post_start).parameters)
        source = inspect.getsource(web.WebSocketResponse._post_start)
    except (AttributeError, TypeError, ValueError, OSError):
        return False
    return names == ["self", "request", "protocol", "writer"] and all(
        piece in source
        for piece in ("WebSocketDataQueue(", "WebSocketReader(", "set_parser(", "_reset_heartbeat()")
    )


SUPPORTED: Final = _supported()


class SyncReadSocket(web.WebSocketResponse):
    """A server WebSocket whose messages go through a :class:`FrameQueue` (when supported)."""

    def _post_start(self, request: web.BaseRequest, protocol: str | None, writer: Any) -> None:
        if not SUPPORTED:
            super()._post_start(request, protocol, writer)
            return
        # aiohttp 3.14's _post_start, with our queue in place of its own
        self._ws_protocol = protocol
        self._writer = writer
        self._reset_heartbeat()
        loop = self._loop
        assert loop is not None
        self._reader = FrameQueue(request._protocol, DEFAULT_CHUNK_SIZE, loop=loop)
        self._parser = WebSocketReader(
            self._reader, self._max_msg_size, compress=bool(self._compress),
            decode_text=self._decode_text,
        )  # fmt: skip
        callback = None if self._heartbeat is None else self._on_data_received
        request.protocol.set_parser(self._parser, data_received_cb=callback)
        request.protocol.keep_alive(False)


def frame_queue(ws: web.WebSocketResponse) -> FrameQueue | None:
    """The socket's :class:`FrameQueue`, once it is prepared; None for any other socket."""
    reader = getattr(ws, "_reader", None)
    return reader if isinstance(reader, FrameQueue) else None
