"""The model's WebSocket (Realtime or GPT-Live, opened by the ``openai`` SDK) with a lean path for
the frames a call is made of.

The SDK connects with ``websockets`` and takes the connection class as an option
(:data:`CONNECT_OPTIONS`, ``create_connection``). ``websockets`` spends tens of microseconds of
Python on every message (a generator-based parser, the message assembler, frame objects, one
``getrandom`` syscall per outgoing mask), and a phone call carries about a hundred messages a
second: on 40 calls that machinery was most of the difference between this service and a bare
relay (BENCHMARKS.md). :class:`ModelSocket` keeps ``websockets`` for everything it is good at
(the handshake, pings, the closing handshake, fragments, size limits, protocol errors) and
handles the common case itself:

* **in**: while the protocol's parser waits at a frame boundary, complete unfragmented text
  frames (FIN, no RSV bits, unmasked, under 64 KiB; one still arriving only up to 8 KiB) are
  cut out of the received bytes directly; the first frame that is anything else, and every
  byte after it, goes to the protocol as before, until its parser is back at a boundary.
  Messages from both paths reach one queue, in order; :meth:`ModelSocket.recv` reads it (the
  SDK's ``recv_bytes`` calls it).
* **watches** (:meth:`ModelSocket.watch`): the reader's next message, when it is ready for
  it, is first shown to a callback chosen by a marker near its start. The barge-in's looks
  (``speech_started``: the caller's ``clear`` at once); the agent audio's takes the message
  (a delta relayed to the caller there and then, never queued for the reader).
* **out**: :meth:`ModelSocket.write_text_now` writes a text frame to the transport in one call
  when that is all ``send`` would do, with a mask from a pool filled from ``os.urandom`` 1,024
  masks at a time (RFC 6455 §5.3 asks for unpredictable masks, not for a syscall each).

Compression stays off (:data:`CONNECT_OPTIONS`): base64 audio gains little from it and every
frame would pay for deflate.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from typing import Any, Final, cast

import structlog
from openai.types.websocket_connection_options import WebSocketConnectionOptions
from websockets.asyncio.client import ClientConnection
from websockets.frames import OP_BINARY, OP_CONT, OP_TEXT, Frame, apply_mask
from websockets.protocol import State
from websockets.streams import StreamReader

try:
    from websockets.exceptions import ConcurrencyError
except ImportError:  # pragma: no cover - websockets < 14
    ConcurrencyError = RuntimeError  # type: ignore[misc,assignment]

MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024  # the SDK's default is no limit at all
FAST_FRAME_BYTES: Final = 65535  # larger frames (a 64-bit length) take the protocol's path
HELD_FRAME_BYTES: Final = 8192  # an incomplete frame larger than this is the protocol's to buffer
MASK_POOL_BYTES: Final = 4096

_TEXT_FIN: Final = 0x81  # FIN, no RSV bits, opcode 1
_OPEN: Final = State.OPEN
_AT_EOF: Final = StreamReader.at_eof.__code__
_DATA: Final = (OP_TEXT, OP_BINARY, OP_CONT)

Message = tuple[bool, bytes]  # (is text, payload)
# called with the next message when it has the marker: True when it handled the message itself
Seen = Callable[[bytes], bool]
WATCH_SPAN: Final = 200  # how far into a message a marker is looked for
TAKEN_PER_READ: Final = 16  # messages a watch may handle in one read callback, the rest wait

log = structlog.get_logger("realtime")


class ModelSocket(ClientConnection):
    """A ``websockets`` client connection with a short path for unfragmented text frames."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._inbox: deque[Message] = deque()
        self._waiter: Any = None  # the future a recv() waits on while the inbox is empty
        self._watches: tuple[tuple[bytes, Seen], ...] = ()
        self._declined: bytes | None = None  # the message at the inbox's head no watch took
        self._takes = TAKEN_PER_READ  # what the watches may still take in this read (or recv call)
        self._ended = False
        self._fast = False  # whether received bytes are cut into frames here
        self._pending = b""  # the start of a frame not complete yet (fast path only)
        self._parts: list[bytes] = []  # a fragmented message the protocol is assembling
        self._parts_text = True
        high, low = self.max_queue  # websockets' Assembler rules: one derived from the other
        if high is not None and low is None:
            low = high // 4
        if high is None and low is not None:
            high = 4 * low
        self._high, self._low = high, low or 0
        self._reading_paused = False
        self._masks = b""
        self._mask_at = 0
        limit = self.protocol.max_size  # a lower limit than 64 KiB: larger frames are its to refuse
        self._fast_bytes = FAST_FRAME_BYTES if limit is None else min(FAST_FRAME_BYTES, limit)

    # -- in --------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self._takes = TAKEN_PER_READ  # one budget for the whole read, whichever path its frames take
        if self._fast and self.protocol.state is _OPEN:  # failed or closing: the protocol decides
            if self._pending:
                data, self._pending = self._pending + data, b""
            rest = self._cut_frames(data)
            if rest is None:
                return
            self._fast, data = False, rest
        super().data_received(data)
        self._fast = not self._ended and _parser_idle(self.protocol)

    def _cut_frames(self, data: bytes) -> bytes | None:
        """Queue the simple text frames ``data`` starts with; keep an incomplete one for the
        next read. Returns the bytes from the first frame of another kind on, else None."""
        end, at, inbox, rest = len(data), 0, self._inbox, None
        while end - at >= 2:
            size = data[at + 1]
            if data[at] != _TEXT_FIN or size > 126:  # another opcode, a mask bit, or 64-bit size
                rest = data[at:]
                break
            head = 2
            if size == 126:
                if end - at < 4:
                    break
                size, head = (data[at + 2] << 8) | data[at + 3], 4
            if size > self._fast_bytes:
                rest = data[at:]
                break
            stop = at + head + size
            if stop > end:
                if head + size > HELD_FRAME_BYTES:  # not held here while it trickles in
                    rest = data[at:]
                break
            inbox.append((True, data[at + head : stop]))
            at = stop
        if rest is None and at < end:
            self._pending = data[at:]  # a frame not complete yet, from its first byte
        self._delivered()
        return rest

    def process_event(self, event: Any) -> None:
        """Data frames the protocol parsed join the same queue (fragments assembled here:
        the protocol has checked their order and their total size)."""
        if self.response is None or not isinstance(event, Frame) or event.opcode not in _DATA:
            super().process_event(event)
            return
        if self.protocol.state is not _OPEN and self._high is not None and len(self._inbox) > self._high:
            return  # we are closing and nobody reads: what is still streamed in is not kept
        if event.opcode is not OP_CONT:
            self._parts_text, self._parts = event.opcode is OP_TEXT, []
        self._parts.append(bytes(event.data))
        if event.fin:
            parts, self._parts = self._parts, []
            self._inbox.append((self._parts_text, parts[0] if len(parts) == 1 else b"".join(parts)))
            self._delivered()

    def watch(self, marker: bytes, seen: Seen | None) -> None:
        """Call ``seen`` with a message that has ``marker`` in its first :data:`WATCH_SPAN`
        bytes as soon as it is the reader's very next message and the reader is ready for it:
        waiting in :meth:`recv` (``seen`` then runs in the socket's read callback, as soon as
        the message is read) or calling it. A reader calls :meth:`recv` only once it has
        handled every earlier message; ``seen`` must not block. When it answers True it has
        handled the message, which the reader never gets; False: the reader gets it as usual
        (and ``seen`` is not asked again). One ``seen`` per marker; None: stop watching for
        ``marker``."""
        kept = tuple((m, s) for m, s in self._watches if m != marker)
        self._watches = kept if seen is None else (*kept, (marker, seen))

    def _delivered(self) -> None:
        waiter = self._waiter
        inbox = self._inbox
        if waiter is not None and not waiter.done():
            if self._watches and inbox:
                self._offer(inbox)
            if inbox or self._ended:
                waiter.set_result(None)
        if (
            self._high is not None and not self._reading_paused and len(inbox) > self._high
            and self.protocol.state is _OPEN  # closing: the close frame must still be read
        ):  # fmt: skip
            self._reading_paused = True
            self.transport.pause_reading()

    def _offer(self, inbox: deque[Message]) -> None:
        """The ready reader's next messages to the watches, while one takes them (at most
        :data:`TAKEN_PER_READ` in one read callback, whichever path its frames took, or in one
        ``recv`` call: a burst then goes the reader's way, in its short steps)."""
        while self._takes > 0:
            text, data = inbox[0]
            if not text or data is self._declined:
                return
            seen = _watching(self._watches, data)
            if seen is None:
                return
            try:
                taken = seen(data)
            except Exception as exc:  # the message still goes the usual way
                log.error("realtime.watch_failed", error=repr(exc)[:200])
                taken = False
            if not taken:
                self._declined = data
                return
            self._takes -= 1
            inbox.popleft()
            if not inbox:
                return

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            self._ended, self._fast = True, False
            self._takes = TAKEN_PER_READ
            self._delivered()

    async def recv(self, decode: bool | None = None) -> Any:
        """The next message, as ``websockets`` would return it; messages that arrived before
        the connection closed are all delivered before it raises ``ConnectionClosed``. Text
        cut out here is not checked for UTF-8 as the protocol would: asked for as ``str``, a
        message that is not UTF-8 is logged and skipped (as bytes it is passed on)."""
        while True:
            text, data = await self._next()
            if not (text if decode is None else decode):
                return data
            try:
                return data.decode()
            except UnicodeDecodeError:
                log.warning("realtime.frame_invalid", size=len(data), reason="not UTF-8")

    async def _next(self) -> Message:
        inbox = self._inbox
        while True:
            if inbox and self._watches:  # ready for the next message: the watches first
                self._takes = TAKEN_PER_READ
                self._offer(inbox)
                if self._reading_paused and len(inbox) <= self._low:
                    self._reading_paused = False
                    self.transport.resume_reading()
            if inbox:
                break
            if self._ended:
                raise self.protocol.close_exc from self.recv_exc
            if self._waiter is not None:
                raise ConcurrencyError("another coroutine is already waiting for the next message")
            self._waiter = self.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        text, data = inbox.popleft()
        if data is self._declined:  # not kept alive past its delivery
            self._declined = None
        if self._reading_paused and len(inbox) <= self._low:
            self._reading_paused = False
            self.transport.resume_reading()
        return text, data

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """As websockets' close; reading resumes first if a full inbox paused it, so that the
        server's close frame is read rather than waited for until ``close_timeout``."""
        if self._reading_paused and not self._ended:
            self._reading_paused = False
            self.transport.resume_reading()
        await super().close(code, reason)

    async def recv_streaming(self, decode: bool | None = None) -> Any:  # pragma: no cover
        raise NotImplementedError("ModelSocket delivers whole messages: use recv()")

    # -- out -------------------------------------------------------------------------------
    def write_text_now(self, data: bytes) -> bool:
        """Write one text frame without a coroutine, when that is all ``send`` would do: the
        connection open, nothing fragmented or queued in the protocol, the write buffer under
        its limit (``send`` would wait for it to drain). False: use ``send``."""
        protocol = self.protocol
        size = len(data)
        if (
            protocol.state is not _OPEN or protocol.expect_continuation_frame or protocol.writes
            or protocol.extensions or self.paused or self.fragmented_send_waiter is not None
            or size > FAST_FRAME_BYTES or self.transport.is_closing()
        ):  # fmt: skip
            return False
        if size < 126:
            head = bytes((_TEXT_FIN, 0x80 | size))
        else:
            head = bytes((_TEXT_FIN, 0xFE, size >> 8, size & 0xFF))
        mask = self._mask()
        self.transport.write(head + mask + apply_mask(data, mask))
        return True

    def _mask(self) -> bytes:
        at = self._mask_at
        if at >= len(self._masks):
            self._masks, at = os.urandom(MASK_POOL_BYTES), 0
        self._mask_at = at + 4
        return self._masks[at : at + 4]


def _watching(watches: tuple[tuple[bytes, Seen], ...], data: bytes) -> Seen | None:
    """The watch whose marker ``data`` has near its start, if any."""
    for marker, seen in watches:
        if data.find(marker, 0, WATCH_SPAN) >= 0:
            return seen
    return None


def _parser_idle(protocol: Any) -> bool:
    """Whether the protocol's parser waits at a frame boundary with nothing buffered: the open
    state, no fragmented message, no extension, and its innermost generator in ``at_eof``."""
    if protocol.state is not _OPEN or protocol.cur_size is not None or protocol.extensions:
        return False
    if protocol.reader.buffer:
        return False
    gen = protocol.parser
    while (inner := getattr(gen, "gi_yieldfrom", None)) is not None:
        gen = inner
    return getattr(gen, "gi_code", None) is _AT_EOF


# what the SDK passes to ``websockets.asyncio.client.connect`` (its TypedDict does not name
# ``create_connection``, which ``connect`` accepts)
CONNECT_OPTIONS: Final = cast(
    WebSocketConnectionOptions,
    {"create_connection": ModelSocket, "max_size": MAX_MESSAGE_BYTES, "compression": None},
)
