"""What both HTTP services (the voice service, the supervisor service) share about requests.

* :func:`bearer_token` is the one parser of ``Authorization: Bearer <token>``: the scheme is
  case-insensitive (RFC 7235 §2.1), surrounding whitespace is ignored; every token check uses it.
* :func:`http_guard` is a middleware, outermost on both apps:

  - a header whose bytes are not UTF-8 (aiohttp hands them on as lone surrogates, which a
    handler encoding the value would fail on with a 500) is answered 400 with the JSON error
    shape ``{"error": {"code", "message"}}`` and logged (``http.header_undecodable``);
  - a request body that has not fully arrived ``read_timeout_s`` after its headers closes the
    connection (``http.slow_client``);
  - a client that resets its connection while its request is handled is logged as
    ``http.client_disconnected`` (info), not left to aiohttp's "Error handling request"
    traceback.

* :func:`server_options` are aiohttp's request-handler settings (``Application(handler_args=…)``,
  so that every runner of the app gets them): a connection must deliver a request's complete
  headers within ``read_timeout_s`` of opening or of its previous response (aiohttp's keep-alive
  timer, which also closes idle keep-alive connections), and request lines and header fields are
  bounded in size and number.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any, Final

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

log = structlog.get_logger("http")

MAX_LINE_BYTES: Final = 8190  # request line
MAX_FIELD_BYTES: Final = 8190  # one header field
MAX_HEADERS: Final = 100
LINGER_S: Final = 2.0  # after a response, how long an unread request body is still drained
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of bytes that are not UTF-8


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (any case of ``Bearer``); None without one."""
    scheme, _, value = headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def error_response(status: int, code: str, message: str, **headers: str) -> web.Response:
    """The JSON error shape: ``{"error": {"code", "message"}}``."""
    body = {"error": {"code": code, "message": message}}
    return web.json_response(body, status=status, headers=headers or None)


def server_options(read_timeout_s: float) -> dict[str, Any]:
    """aiohttp request-handler settings bounding how long and how much a client may send."""
    return {
        "keepalive_timeout": read_timeout_s,
        "max_line_size": MAX_LINE_BYTES,
        "max_field_size": MAX_FIELD_BYTES,
        "max_headers": MAX_HEADERS,
        "lingering_time": LINGER_S,
    }


def _printable(text: str, limit: int = 40) -> str:
    return text.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")[:limit]


def undecodable_header(request: web.Request) -> str | None:
    """The name of the first header whose name or value is not UTF-8, if any."""
    for name, value in request.headers.items():
        if _UNDECODABLE.search(name) or _UNDECODABLE.search(value):
            return _printable(name)
    return None


def http_guard(read_timeout_s: float) -> Middleware:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        bad = undecodable_header(request)
        if bad is not None:
            log.warning("http.header_undecodable", header=bad, path=_printable(request.path, 200))
            return error_response(400, "bad_header", f"header {bad} is not valid UTF-8")
        timer = None
        if request.body_exists and not request.content.is_eof():
            loop = asyncio.get_running_loop()
            timer = loop.call_later(read_timeout_s, _body_too_slow, request, read_timeout_s)
        try:
            return await handler(request)
        except ConnectionResetError:
            transport = request.transport
            if transport is not None and not transport.is_closing():
                raise  # not this client's connection
            log.info("http.client_disconnected", method=request.method, path=_printable(request.path, 200))
            return web.Response(status=400, text="client disconnected")  # nobody left to read it
        finally:
            if timer is not None:
                timer.cancel()

    return guard


def _body_too_slow(request: web.Request, read_timeout_s: float) -> None:
    transport = request.transport
    if request.content.is_eof() or transport is None or transport.is_closing():
        return
    log.info(
        "http.slow_client", phase="body", method=request.method, path=_printable(request.path, 200),
        timeout_s=read_timeout_s,
    )  # fmt: skip
    transport.close()
