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

aiohttp builds its queue in a private method (``WebSocketResponse._post_start``), from the
name ``WebSocketDataQueue`` in its module ``aiohttp.web_ws``. :class:`SyncReadSocket` lets
aiohttp's own method run, with that name bound to :class:`FrameQueue` for the duration of the
call (synchronous, and under a lock for servers on other threads' loops), so whatever else the
method does in a later aiohttp is kept. Where the name is not there, or the socket's queue is
not a :class:`FrameQueue` afterwards, the socket is a plain one and frames take the queue's
path (logged once an hour at most: ``stream.frame_queue_unavailable``).
``tests/responder/transports/test_frame_queue.py`` fails if the installed aiohttp no longer
allows it, so an upgrade cannot silently lose the path.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Final

import aiohttp
import structlog
from aiohttp import WSMsgType, web, web_ws
from aiohttp._websocket.reader import WebSocketDataQueue

from infra.logs import LogBudget

Take = Callable[[str], bool]  # a text frame → handled there and then
ENDED: Final = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED})  # as `async for` ends
_QUEUE_NAME: Final = "WebSocketDataQueue"  # the name aiohttp.web_ws builds a socket's queue from
_UNAVAILABLE = LogBudget(1, 1 / 3600)  # once an hour at most
log = structlog.get_logger("stream")


class FrameQueue(WebSocketDataQueue):  # type: ignore[misc]  # aiohttp's (Cython) class
    """aiohttp's message queue, offering a text message to :attr:`take` first when it is safe."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.take: Take | None = None
        self.idle = False  # the reader is waiting in receive() and has handled every earlier message

    def feed_data(self, data: Any, size: int) -> None:
        take = self.take
        if (
            take is not None and self.idle and not self._buffer
            and data[0] is WSMsgType.TEXT and take(data[1])
        ):  # fmt: skip
            return
        super().feed_data(data, size)


_AIOHTTP_QUEUE: Final = getattr(web_ws, _QUEUE_NAME, None)
_REBINDABLE: Final = isinstance(_AIOHTTP_QUEUE, type) and issubclass(FrameQueue, _AIOHTTP_QUEUE)
_REBINDING = threading.Lock()


class SyncReadSocket(web.WebSocketResponse):
    """A server WebSocket whose messages go through a :class:`FrameQueue` (where aiohttp allows)."""

    def _post_start(self, request: web.BaseRequest, protocol: str | None, writer: Any) -> None:
        if not _REBINDABLE:
            super()._post_start(request, protocol, writer)
        else:
            with _REBINDING:  # servers on other threads' loops (tests) prepare sockets too
                setattr(web_ws, _QUEUE_NAME, FrameQueue)
                try:
                    super()._post_start(request, protocol, writer)
                finally:
                    setattr(web_ws, _QUEUE_NAME, _AIOHTTP_QUEUE)
        if frame_queue(self) is None and _UNAVAILABLE.allow():
            log.warning("stream.frame_queue_unavailable", aiohttp=aiohttp.__version__)


def frame_queue(ws: web.WebSocketResponse) -> FrameQueue | None:
    """The socket's :class:`FrameQueue`, once it is prepared; None for any other socket."""
    reader = getattr(ws, "_reader", None)
    return reader if isinstance(reader, FrameQueue) else None


async def receive(ws: web.WebSocketResponse, queue: FrameQueue | None) -> Any:
    """The socket's next message, read as its :class:`FrameQueue` (``queue``, None for a plain
    socket) needs: parked with every earlier message handled, the next may be taken; not while
    ``receive()`` pops a queued one (a stalled parser resumed there parses on)."""
    if queue is None:
        return await ws.receive()
    queue.idle = not queue._buffer
    try:
        return await ws.receive()
    finally:
        queue.idle = False
