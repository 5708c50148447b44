"""The voice service's HTTP guard (infra/http.py; issue 14, items 8, 12 and 13): undecodable
header bytes get a JSON 400, not a 500; slow clients are cut off; a client resetting its
connection mid-request is a log event, not a traceback; Bearer is parsed one way everywhere.
Against the real service on loopback, over raw sockets where a client has to misbehave."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import unused_port
from structlog.testing import capture_logs

from infra.http import bearer_token
from infra.settings import Settings
from responder.server.app import create_app
from tests.support.raw_http import dribble_headers, raw_request, status_and_json
from tests.support.waits import wait_until

ADMIN = "admin-token-0123456789abcdef"


def test_bearer_scheme_is_case_insensitive() -> None:
    for header in ("Bearer abc", "bearer abc", "BEARER  abc ", " bEaReR abc"):
        assert bearer_token({"Authorization": header}) == "abc"
    for header in ("", "Basic abc", "Bearer", "Bearer ", "Bearerabc"):
        assert bearer_token({"Authorization": header}) is None


async def test_undecodable_header_bytes_get_a_json_400(
    start_service: Callable[..., Any],
    make_settings: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Was: 500 and a traceback on stderr (``Bearer \\xff\\xfe`` on the trace API and a call's
    event stream)."""
    svc = await start_service(make_settings(admin_token=ADMIN))
    port = svc.server.port
    caplog.set_level(logging.ERROR)
    with capture_logs() as logs:
        for path in (b"/api/traces", b"/calls/ws_abc/events", b"/healthz"):
            raw = await raw_request(
                port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n"
                b"Connection: close\r\n\r\n",
            )  # fmt: skip
            status, body = status_and_json(raw)
            assert status == 400 and body["error"]["code"] == "bad_header", (path, raw[:200])
    assert [e["header"] for e in logs if e["event"] == "http.header_undecodable"] == ["Authorization"] * 3
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    async with aiohttp.ClientSession() as http:  # the scheme in any case, as the supervisor takes it
        for scheme in ("Bearer", "bearer"):
            headers = {"Authorization": f"{scheme} {ADMIN}"}
            async with http.get(svc.url + "/api/traces", headers=headers) as resp:
                assert resp.status == 200, scheme


async def test_slow_headers_and_slow_bodies_are_cut_off(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    """Was: headers dribbled one line every 5 s were still answered after 35 s."""
    svc = await start_service(make_settings(http_read_timeout_s=1.0))
    port = svc.server.port
    answered, after_s = await dribble_headers(port)  # one line every 0.25 s: complete after 3 s
    assert answered == b"" and after_s < 2.0  # closed at the 1 s deadline, never answered
    loop = asyncio.get_running_loop()
    with capture_logs() as logs:  # a body that never completes
        started = loop.time()
        raw = await raw_request(
            port, b"POST /calls/webrtc HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\n"
            b"Content-Length: 100\r\n\r\nv=0\r\n", timeout_s=3.0,
        )  # fmt: skip
    assert b" 200 " not in raw and loop.time() - started < 2.5
    assert [e["phase"] for e in logs if e["event"] == "http.slow_client"] == ["body"]


@pytest.fixture
async def served_like_run_app(make_settings: Callable[..., Settings]) -> AsyncIterator[int]:
    """The service under aiohttp's runner as ``web.run_app`` sets it up (``responder serve``):
    handlers are not cancelled when their client goes away (the test server's are)."""
    port = unused_port()
    settings = make_settings(port=port, public_url=f"http://127.0.0.1:{port}")
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


async def test_a_client_resetting_mid_request_is_logged_not_a_traceback(
    served_like_run_app: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Was: ``ConnectionResetError`` tracebacks ("Error handling request") for each client that
    disconnected while its body was being read."""
    caplog.set_level(logging.ERROR)
    with capture_logs() as logs:
        for path, content_type in (
            (b"/twilio/voice", b"application/x-www-form-urlencoded"), (b"/calls/webrtc", b"application/sdp")
        ):
            _, writer = await asyncio.open_connection("127.0.0.1", served_like_run_app)
            writer.write(
                b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: " + content_type + b"\r\n"
                b"Content-Length: 100\r\n\r\nv=0\r\n"
            )
            await writer.drain()
            await asyncio.sleep(0.2)  # the handler is reading the body now
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
            writer.close()
        await wait_until(
            lambda: len([e for e in logs if e["event"] == "http.client_disconnected"]) == 2,
            3.0, what="both disconnects logged",
        )  # fmt: skip
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
