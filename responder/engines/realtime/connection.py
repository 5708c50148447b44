"""A Realtime GA connection through the ``openai`` SDK, with a raw-JSON hot path."""

from __future__ import annotations

import itertools
import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol

import structlog
from openai import AsyncOpenAI
from websockets.exceptions import ConnectionClosed

try:
    from websockets.protocol import State

    _OPEN: Any = State.OPEN
except ImportError:  # pragma: no cover - websockets without the Sans-I/O layer
    _OPEN = None

from responder.engines.realtime.model_socket import CONNECT_OPTIONS, ModelSocket
from responder.engines.realtime.protocol import audio_append

log = structlog.get_logger("realtime")


class SdkConnection(Protocol):
    """The ``openai`` SDK's WebSocket connections as used here: Realtime
    (``client.realtime.connect``), GPT-Live (``client.live.connect``) and its sideband
    (``client.live.sideband.connect``) share this base."""

    async def send_raw(self, data: bytes | str) -> None: ...

    async def recv_bytes(self) -> bytes: ...

    async def close(self) -> None: ...


class RealtimeSocket(Protocol):
    """What :class:`~responder.engines.realtime.engine.RealtimeEngine` needs of a Realtime
    WebSocket: :class:`RealtimeConnection` is the real one."""

    def new_event_id(self) -> str: ...

    async def send(self, event: Mapping[str, object]) -> str: ...

    async def append_audio(self, b64_audio: str) -> None: ...

    def append_audio_now(self, b64_audio: str) -> bool:
        """:meth:`append_audio` without a coroutine when nothing needs awaiting: True when the
        frame went out, False when the caller must await :meth:`append_audio` instead."""
        ...

    def sent_type(self, event_id: str | None) -> str | None: ...

    def watch(self, marker: bytes, seen: Callable[[bytes], bool]) -> bool:
        """See :meth:`ModelSocket.watch`; False when the socket cannot (nothing is watched)."""
        ...

    def events(self) -> AsyncIterator[dict[str, Any]]: ...

    async def close(self) -> None: ...


class RealtimeConnection:
    """Sends client events (with ids remembered for error reports) and yields server events as dicts."""

    def __init__(
        self, conn: SdkConnection, call_id: str,
        frame_audio: Callable[[str], str] = audio_append,
    ) -> None:  # fmt: skip
        """``conn`` is the SDK's Realtime connection, or its Live one (the same WebSocket base:
        GPT-Live frames caller audio as ``session.input_audio.append``, ``frame_audio``)."""
        self._conn = conn
        self.call_id = call_id
        self._frame_audio = frame_audio
        self._ids = itertools.count(1)
        self._sent: OrderedDict[str, str] = OrderedDict()
        self._direct = _direct_sender(conn)

    def new_event_id(self) -> str:
        return f"evt_{self.call_id[-8:]}_{next(self._ids)}"

    async def send(self, event: Mapping[str, object]) -> str:
        """Send a client event (built in a protocol module); returns its ``event_id``."""
        event_id = str(event.get("event_id") or self.new_event_id())
        self._sent[event_id] = str(event["type"])
        while len(self._sent) > 256:
            self._sent.popitem(last=False)
        await self._conn.send_raw(json.dumps({**event, "event_id": event_id}))
        return event_id

    async def append_audio(self, b64_audio: str) -> None:
        """Hot path: relay caller audio (base64 text, never decoded) to the input buffer.

        Written straight to the SDK's underlying ``websockets`` connection, which is what the
        SDK's ``send_raw`` ends in: its own layer (a send-queue check under thread locks and an
        anyio task lookup) cost a third of a 20 ms frame's relay. Only while the SDK has nothing
        queued (messages held back during its reconnect go first), else through ``send_raw``."""
        text = self._frame_audio(b64_audio)
        direct = self._direct
        if direct is None or not direct.idle():
            await self._conn.send_raw(text)
        elif not direct.write_now(text):
            await direct.send(text)

    def append_audio_now(self, b64_audio: str) -> bool:
        """The caller-audio hot path with no coroutine at all (each layer's coroutine costs about
        what the frame's write does in Python): True when the frame was written; False when a
        send must be awaited (the SDK queues, reconnects or the socket's buffer is full)."""
        direct = self._direct
        return direct is not None and direct.idle() and direct.write_now(self._frame_audio(b64_audio))

    def sent_type(self, event_id: str | None) -> str | None:
        """The type of a client event we sent, by id (for logging server errors)."""
        return self._sent.get(event_id) if event_id else None

    def watch(self, marker: bytes, seen: Callable[[bytes], bool]) -> bool:
        """On the SDK's own socket, while it is a :class:`ModelSocket` (after an SDK reconnect
        the new socket is not watched: its messages take the usual way only)."""
        lean = self._direct.readable_now() if self._direct is not None else None
        if lean is None:
            return False
        lean.watch(marker, seen)
        return True

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Server events as plain dicts until the socket closes. Undecodable frames are logged."""
        direct = self._direct
        while True:
            try:
                lean = direct.readable_now() if direct is not None else None
                raw = await (lean.recv(decode=False) if lean is not None else self._conn.recv_bytes())
            except ConnectionClosed:
                return
            try:
                event = json.loads(raw)
            except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested absurdly deep
                log.warning("realtime.frame_invalid", call_id=self.call_id, size=len(raw))
                continue
            if isinstance(event, dict):
                yield event

    async def close(self) -> None:
        await self._conn.close()


class _DirectSender:
    """The SDK connection's ``websockets`` connection, and whether its send queue is idle."""

    def __init__(self, conn: Any, send: Callable[[str], Awaitable[None]]) -> None:
        self._conn = conn
        self._queue = conn._send_queue
        self.send = send
        self._origin = conn._connection
        self._ws = _writable_now(self._origin)
        self._lean = self._origin if isinstance(self._origin, ModelSocket) else None
        queue = self._queue
        self._lock_free = isinstance(getattr(queue, "_queue", None), list) and hasattr(queue, "_pending")

    def idle(self) -> bool:
        conn, queue = self._conn, self._queue
        # the queue's own property takes a thread lock: read lock-free on the loop's thread
        if self._lock_free:
            queued = bool(queue._queue) or queue._pending is not None
        else:
            queued = queue.has_pending_or_flushing
        return not (
            conn._is_reconnecting or conn._intentionally_closed or queued
            or conn._connection is not self._origin
        )  # fmt: skip

    def readable_now(self) -> ModelSocket | None:
        """The model socket to read straight from, when that is all the SDK's ``recv_bytes``
        would do (its own connection, no reconnect being accounted): one coroutine less and
        no debug log call per server event. None: read through the SDK."""
        conn, lean = self._conn, self._lean
        if lean is None or conn._connection is not lean or getattr(conn, "_reconnect_attempt", 1):
            return None
        return lean

    def write_now(self, text: str) -> bool:
        """Write one text frame without a coroutine, when that is all ``send`` would do: the
        socket open, nothing fragmented in flight, its buffer not over the high-water mark
        (``send`` would wait for it to drain). False: use :meth:`send`."""
        if self._lean is not None:
            return self._lean.write_text_now(text.encode())
        ws = self._ws
        if ws is None or ws.fragmented_send_waiter is not None or ws.paused or ws.protocol.state is not _OPEN:
            return False
        if ws.transport.is_closing():
            return False
        ws.protocol.send_text(text.encode())
        ws.send_data()
        return True


def _writable_now(ws: Any) -> Any:
    """The ``websockets`` asyncio connection if it has what :meth:`_DirectSender.write_now`
    uses (a newer release may not): None otherwise."""
    names = ("fragmented_send_waiter", "paused", "protocol", "transport", "send_data")
    if _OPEN is None or not all(hasattr(ws, name) for name in names):
        return None
    return ws if hasattr(ws.protocol, "send_text") and hasattr(ws.protocol, "state") else None


def _direct_sender(conn: SdkConnection) -> _DirectSender | None:
    """None when the SDK's internals are not as expected (a newer SDK): ``send_raw`` then."""
    ws, queue = getattr(conn, "_connection", None), getattr(conn, "_send_queue", None)
    send = getattr(ws, "send", None)
    known = all(hasattr(conn, name) for name in ("_is_reconnecting", "_intentionally_closed"))
    if send is None or not known or not isinstance(getattr(queue, "has_pending_or_flushing", None), bool):
        return None
    return _DirectSender(conn, send)


def make_client(api_key: str, base_url: str, websocket_base_url: str | None) -> AsyncOpenAI:
    return AsyncOpenAI(api_key=api_key, base_url=base_url, websocket_base_url=websocket_base_url)


@asynccontextmanager
async def open_realtime(
    client: AsyncOpenAI, call_id: str, *, model: str | None = None, sideband_call_id: str | None = None
) -> AsyncIterator[RealtimeConnection]:
    """Open a Realtime WS: a new session for ``model``, or a sideband to ``sideband_call_id``."""
    kwargs: dict[str, Any] = {"call_id": sideband_call_id} if sideband_call_id else {"model": model}
    async with client.realtime.connect(**kwargs, websocket_connection_options=CONNECT_OPTIONS) as conn:
        yield RealtimeConnection(conn, call_id)
