"""The simulator's GPT-Live routes (a test double of ``/v1/live/…``).

* ``GET /v1/live/sessions`` — the primary WebSocket (``client.live.connect()``): no query
  parameters (the model goes in ``session.start``; any parameter → ``400``
  ``unknown_parameter``), ``Authorization: Bearer …`` (``401`` otherwise). Played by
  :class:`simulator.live.LiveSession`.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from simulator.http_common import has_bearer, openai_error, unauthorized
from simulator.live import LiveSession
from simulator.live_audio import warm as warm_audio
from simulator.live_protocol import warm as warm_protocol
from simulator.state import STATE_KEY

log = structlog.get_logger("simulator.live")


async def live_websocket(request: web.Request) -> web.StreamResponse:
    if not has_bearer(request):
        return unauthorized()
    if request.query:
        name = next(iter(request.query))
        log.warning("simulator.live.upgrade_refused", param=name)
        message = (
            f"Unknown parameter: '{name}'. The Live WebSocket takes no query parameters: "
            "send the model in session.start."
        )
        return openai_error(400, message, "unknown_parameter", param=name)
    ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024)
    await ws.prepare(request)
    await LiveSession(ws, request.app[STATE_KEY]).run()
    return ws


def add_live_routes(app: web.Application) -> None:
    """Mount ``GET /v1/live/sessions`` (WebSocket) on the simulator app."""
    warm_audio()
    warm_protocol()
    app.router.add_get("/v1/live/sessions", live_websocket)
