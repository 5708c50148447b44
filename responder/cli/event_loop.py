"""How a serving command runs its aiohttp app: on uvloop when installed (a dependency except on
Windows), else asyncio's own loop; uvloop measured ~13 % less CPU per call (BENCHMARKS.md).
A port that cannot be bound, or a host that does not resolve, is one log line and exit
status 1, not a traceback."""

from __future__ import annotations

import argparse
import asyncio
import errno
import socket
from typing import Any, Final

import structlog
from aiohttp import web

log = structlog.get_logger("cli")

# what the listening socket's bind fails with: taken, not this host's address, privileged
_BIND_ERRORS: Final = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES})
EXIT_BIND_FAILED: Final = 1


def tcp_port(text: str) -> int:
    """An ``--port`` value: a TCP port, 1 to 65535 (a larger one would wrap round at bind)."""
    if not (text.isascii() and text.isdigit()):  # int() would take "1_8181" and other digits
        raise argparse.ArgumentTypeError(f"not a port number: {text[:20]!r}")
    port = int(text)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1 to 65535, not {port}")
    return port


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        log.info("app.event_loop", loop="asyncio")
        return asyncio.new_event_loop()
    log.info("app.event_loop", loop="uvloop")
    return uvloop.new_event_loop()


def serve_app(app: web.Application, host: str, port: int, **options: Any) -> int:
    """``web.run_app`` on :func:`new_event_loop` with no access log (request lines carry
    live-transcript tokens); the exit status. aiohttp binds after the app's startup, and
    cleans it up when the bind fails, so nothing is left open on that path."""
    try:
        web.run_app(
            app, host=host, port=port, print=None, access_log=None, loop=new_event_loop(), **options
        )  # fmt: skip
    except OSError as exc:
        if not logged_bind_failure(exc, host, port):
            raise
        return EXIT_BIND_FAILED
    return 0


def logged_bind_failure(exc: OSError, host: str, port: int) -> bool:
    """Whether ``exc`` says the listening socket could not be had (then logged: app.bind_failed)."""
    if isinstance(exc, socket.gaierror):  # the host does not resolve: nothing to bind
        log.error("app.bind_failed", host=host, port=port, errno="EAI", reason=str(exc.strerror)[:100])
        return True
    if exc.errno in _BIND_ERRORS:
        log.error("app.bind_failed", host=host, port=port, errno=errno.errorcode.get(exc.errno or 0, "?"))
        return True
    return False
