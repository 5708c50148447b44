"""The browser call page: ``GET /`` and ``/call``, its static files, ``GET /calls/config``.

Plain HTML and JavaScript under ``static/`` (no build step, nothing from a CDN), served with a
strict Content-Security-Policy. The page asks ``/calls/config`` which way to call:

* ``websocket`` (keyless mode: the simulator stands in for OpenAI): PCM16 24 kHz audio over
  ``/calls/ws`` (:mod:`responder.transports.websocket`);
* ``webrtc`` (an OpenAI key is configured): the browser posts its SDP offer to
  ``/calls/webrtc``; the service creates the call with its key and returns the answer. The
  key never reaches the browser.

Either way the transcript comes from ``/calls/{call_id}/events`` (:mod:`responder.web.live`).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from responder.runtime.services import SERVICES

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/call/static/"
CONFIG_PATH = "/calls/config"
MODES = ("websocket", "webrtc")

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self'",
        "media-src 'self' blob:",
        "worker-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
    # the page asks for the microphone of its own origin only
    "Permissions-Policy": "microphone=(self), camera=()",
}


def add_call_page_routes(app: web.Application) -> None:
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")

    async def call_page(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html", headers=PAGE_HEADERS)

    app.router.add_get("/", call_page)
    app.router.add_get("/call", call_page)
    app.router.add_get(CONFIG_PATH, call_config)
    app.router.add_static(STATIC_PREFIX, STATIC_DIR, append_version=False)


async def call_config(request: web.Request) -> web.Response:
    """How the page should call. Nothing secret: the default mode and the modes on offer.

    Both transports work either way (the simulator answers WebRTC offers too, with a virtual
    caller); the default is WebRTC when a real key is configured, the PCM WebSocket in
    keyless mode. ``/call?mode=…`` picks another mode on offer.
    """
    services = request.app[SERVICES]
    mode = "websocket" if services.simulator_url is not None else "webrtc"
    body = {"mode": mode, "modes": [mode, *(m for m in MODES if m != mode)]}
    return web.json_response(body, headers={"Cache-Control": "no-store"})
