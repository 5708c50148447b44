"""Browser/client WebSocket transport: PCM16 24 kHz audio over our own WebSocket.

``GET /calls/ws`` (WebSocket). Audio both ways is PCM16 little-endian mono at 24 kHz, the
Realtime format ``{"type": "audio/pcm", "rate": 24000}``, so it is relayed to the Realtime
session without resampling (48 bytes per millisecond).

Client → server
  * binary frame: caller audio (an even number of bytes; at most 64 KiB a frame);
  * text frames, JSON control messages:

    - ``{"type": "start", "caller": "…"}`` — optional, first frame only: who is calling;
    - ``{"type": "mark", "name": "…"}`` — echo of a server mark once the audio sent before
      it has been *played* (or dropped by a ``clear``, as Twilio does);
    - ``{"type": "dtmf", "digit": "1"}`` — a key press (``0-9``, ``*``, ``#``, ``A-D``);
    - ``{"type": "stop"}`` — the caller hangs up.

Server → client
  * ``{"type": "call", "call_id": "ws_…"}`` first (the id also names the live transcript,
    ``GET /calls/{call_id}/events``);
  * binary frames of assistant audio, each followed by ``{"type": "mark", "name": "…"}``;
  * ``{"type": "clear"}`` on barge-in: drop queued audio, echo the marks it drops;
  * ``{"type": "ended", "reason": "…"}`` last, then the socket closes.

A call starts with the first frame: a ``start`` frame, or anything else (the call then has
no caller label). A socket that sends nothing within the start timeout is closed (1008).
Bad JSON, unknown types and odd-length audio are logged (``websocket.frame_invalid``) and
skipped. A new call passes call admission first (concurrent-call cap, per-client rate
limit): a refusal is a plain HTTP 429 with ``Retry-After``, before the upgrade.
Barge-in truncation counts only audio whose marks came back (played), clamped to what was
sent.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import structlog
from aiohttp import web

from infra.metrics import CALLS_REFUSED
from responder.core.controller import ControllerConfig
from responder.core.end_reason import STOP_RECEIVED
from responder.core.engine import engine_named
from responder.engines.realtime.session import PCM24K
from responder.runtime.admission import AdmissionRefused
from responder.runtime.client_address import client_address
from responder.runtime.services import SERVICES, Services
from responder.transports.stream import MAX_MSG_SIZE, LogNames, StreamCall
from responder.transports.webrtc import REFUSALS_LOGGED, refused_response

log = structlog.get_logger("websocket")

WS_PATH = "/calls/ws"
BYTES_PER_MS = 48.0  # PCM16 mono 24 kHz
CALL_ID_PREFIX = "ws_"
MAX_CALLER_CHARS = 64
_DIGITS = frozenset("0123456789*#ABCD")
_MARK_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def add_websocket_routes(app: web.Application) -> None:
    app.router.add_get(WS_PATH, call_socket)


def new_call_id() -> str:
    return CALL_ID_PREFIX + secrets.token_hex(12)


class WebSocketCaller:
    """The client side of a WebSocket call: binary audio, marks, clears, the end notice."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.ended = False  # ``ended`` was sent: it is the last frame, nothing may follow it

    async def send_audio(self, b64_audio: str, mark: str | None) -> None:
        if self.ws.closed or self.ended:
            return
        await self.ws.send_bytes(base64.b64decode(b64_audio))
        if mark is not None:
            await self.send_mark(mark)

    async def send_mark(self, mark: str) -> None:
        if not self.ws.closed and not self.ended:  # the call may have ended meanwhile
            await self.ws.send_str('{"type":"mark","name":"' + mark + '"}')

    async def clear_audio(self) -> None:
        if not self.ws.closed and not self.ended:
            await self.ws.send_str('{"type":"clear"}')

    def send_audio_now(self, b64_audio: str, mark: Callable[[], str | None]) -> bool:
        return False  # decoded and sent as binary by send_audio

    def clear_now(self) -> bool:  # the barge-in's handler sends it
        return False

    async def send_control(self, message: dict[str, Any]) -> None:
        if not self.ws.closed:
            await self.ws.send_str(json.dumps(message))


class WebSocketSession(StreamCall):
    """One client WebSocket: PCM16 binary audio plus JSON control frames."""

    transport = "websocket"
    type_key = "type"
    audio_format = PCM24K
    names = LogNames.of("websocket")

    def __init__(self, ws: web.WebSocketResponse, services: Services) -> None:
        super().__init__(ws, services)
        self.caller = WebSocketCaller(ws)
        self.end_reason: str | None = None
        self.handlers = {
            "start": self._on_start,
            "mark": self._on_mark,
            "dtmf": self._on_dtmf,
            "stop": self._on_stop,
        }

    def controller_config(self) -> ControllerConfig:
        return self.services.controller_config(bytes_per_ms=BYTES_PER_MS, transport=self.transport)

    def idle_timeout_s(self) -> float:
        """The page streams its microphone (silence too) for the whole call: a socket that sends
        nothing is not a caller, and must not hold a call and its model session. The WebSocket
        ping is no such check, a client's library answers it by itself."""
        return self.services.settings.stream_idle_s

    async def on_text(self, data: str) -> None:
        if self.started:
            await super().on_text(data)
            return
        caller = _start_caller(data)
        await self._begin_call(caller or "")
        if caller is None:  # not a start frame: the call began without a caller label
            await super().on_text(data)

    async def on_binary(self, data: bytes) -> None:
        """Caller audio: base64-encoded once and handed on; never parsed into a model."""
        if not self.started:
            await self._begin_call("")
        if not data or len(data) % 2:
            if self.invalid_frames.allow():
                self.log.warning(self.names.frame_invalid, reason="audio frame of odd or zero length")
            return
        if self.controller is not None:
            await self.controller.caller_audio(base64.b64encode(data).decode("ascii"))

    async def _begin_call(self, caller_label: str) -> None:
        call_id = new_call_id()
        token = self.services.view_token(call_id)
        await self.caller.send_control({"type": "call", "call_id": call_id, "view_token": token})
        try:
            await self.begin(call_id, self.caller, caller=caller_label)
        except Exception as exc:  # Redis unreachable: no call can be recorded, end it politely
            self.log.error("websocket.call_failed", call_id=call_id, error=repr(exc))
            await self.call_over("unavailable")
            await self.ws.close(code=1011, message=b"call could not start")

    async def _on_start(self, frame: dict[str, Any]) -> None:
        """Only reached for a start that is not the first frame (see :meth:`on_text`)."""
        caller = frame.get("caller", "")
        if not isinstance(caller, str) or len(caller) > MAX_CALLER_CHARS:
            raise ValueError("caller must be a short string")
        raise ValueError("start is only valid as the first frame")

    async def _on_mark(self, frame: dict[str, Any]) -> None:
        name = frame["name"]
        if not isinstance(name, str) or not _MARK_NAME.fullmatch(name):
            raise ValueError("mark name must be a short token")
        if self.controller is not None:
            self.controller.caller_mark(name)

    async def _on_dtmf(self, frame: dict[str, Any]) -> None:
        digit = frame["digit"]
        if not isinstance(digit, str) or digit not in _DIGITS:
            raise ValueError("dtmf digit must be one of 0-9 * # A-D")
        await self.caller_dtmf(digit)

    async def _on_stop(self, frame: dict[str, Any]) -> None:
        self.log.info("websocket.caller_stopped")
        await self.call_over("caller_stopped")
        if self.controller is not None:
            await self.controller.close(STOP_RECEIVED)
        elif not self.ws.closed:
            await self.ws.close()

    async def call_over(self, reason: str) -> None:
        if self.end_reason is not None:
            return
        self.end_reason = reason
        self.caller.ended = True
        try:
            await self.caller.send_control({"type": "ended", "reason": reason})
        except (ConnectionError, RuntimeError):
            pass  # the client is already gone


def _start_caller(data: str) -> str | None:
    """The caller label of a valid ``start`` frame; None for any other frame."""
    try:
        frame = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(frame, dict) or frame.get("type") != "start":
        return None
    caller = frame.get("caller", "")
    return caller if isinstance(caller, str) and len(caller) <= MAX_CALLER_CHARS else None


def foreign_origin(request: web.Request, services: Services) -> str | None:
    """A browser page from another site (its ``Origin``) trying to open a call; None if fine.

    Programmatic clients send no ``Origin``; the call page is served by this service, so its
    origin is the host it asked, or the configured public URL."""
    origin = request.headers.get("Origin")
    if origin is None:
        return None
    host = urlsplit(origin).netloc
    allowed = {request.host, urlsplit(services.settings.external_url()).netloc}
    return None if host and host in allowed else origin[:100]


async def call_socket(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    origin = foreign_origin(request, services)
    if origin is not None:
        CALLS_REFUSED.labels(transport="websocket", reason="origin").inc()
        if (suppressed := REFUSALS_LOGGED.let_through()) is not None:
            log.warning(
                "websocket.call_refused", reason="foreign origin", origin=origin, suppressed=suppressed
            )
        raise web.HTTPForbidden(text="calls can only be started from this service's own page")
    try:  # before the upgrade: a refused client gets a plain 429 with Retry-After
        ticket = services.admission.admit(
            "websocket", client_address(request, services.settings), draining=services.draining
        )
    except AdmissionRefused as refused:
        if (suppressed := REFUSALS_LOGGED.let_through()) is not None:
            log.warning("websocket.call_refused", reason=refused.reason, suppressed=suppressed)
        return refused_response(refused)
    try:
        ws = web.WebSocketResponse(max_msg_size=MAX_MSG_SIZE, heartbeat=30)  # ≤ 64 KiB a frame
        await ws.prepare(request)
        session = WebSocketSession(ws, services)
        session.engine = engine_named(request.query.get("engine"), session.engine)  # ?engine=live
        await session.serve()
        return ws
    finally:
        ticket.release()

