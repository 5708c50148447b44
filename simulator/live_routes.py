"""The simulator's GPT-Live routes (a test double of ``/v1/live/…``).

* ``GET /v1/live/sessions`` — the primary WebSocket (``client.live.connect()``): no query
  parameters (the model goes in ``session.start``; any parameter → ``400``
  ``unknown_parameter``), ``Authorization: Bearer …`` (``401`` otherwise). Played by
  :class:`simulator.live.LiveSession` (in probe mode: :class:`simulator.live_probe.LiveProbeSession`).
* ``GET /v1/live/sessions/{session_id}/attach`` — the sideband of a virtual WebRTC/SIP session
  (``client.live.sideband.connect(session_id=…)``; ``?graceful_close=`` only), played by
  :class:`simulator.live_sideband.LiveSideband`. An unknown session, or one not active (still
  ringing, rejected, over) → ``404`` before the upgrade.
* ``POST /v1/live/sessions`` and ``…/{session_id}/accept|reject|refer|hangup`` — see
  :mod:`simulator.live_calls`.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from simulator.http_common import has_bearer, openai_error, unauthorized
from simulator.live import LiveSession
from simulator.live_audio import warm as warm_audio
from simulator.live_calls import add_live_call_routes
from simulator.live_probe import LIVE_PROBE_KEY, LiveProbeConfig, LiveProbeSession
from simulator.live_protocol import warm as warm_protocol
from simulator.live_sideband import LiveSideband
from simulator.probe import PROBE_KEY
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
    probe = request.app.get(PROBE_KEY)
    if probe is not None:  # probe mode (load tests): a cheap, timed model
        config = request.app.get(LIVE_PROBE_KEY) or LiveProbeConfig.following(probe.config)
        await LiveProbeSession(ws, probe, config).run()
        return ws
    await LiveSession(ws, request.app[STATE_KEY]).run()
    return ws


async def live_sideband(request: web.Request) -> web.StreamResponse:
    if not has_bearer(request):
        return unauthorized()
    state = request.app[STATE_KEY]
    session_id = request.match_info["session_id"]
    unknown = [name for name in request.query if name != "graceful_close"]
    if unknown:
        message = f"Unknown parameter: '{unknown[0]}'."
        return openai_error(400, message, "unknown_parameter", param=unknown[0])
    call = state.live_calls.get(session_id)
    if call is None or call.status != "active":
        log.warning(
            "simulator.live.sideband_refused", live_session_id=session_id, status=call and call.status
        )
        message = f"Session '{session_id}' not found or not active."
        return openai_error(404, message, "session_not_found", param="session_id")
    ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024)
    await ws.prepare(request)
    await LiveSideband(ws, state, call).run()
    return ws


def add_live_routes(app: web.Application) -> None:
    """Mount the Live WebSockets and the sessions REST API on the simulator app."""
    warm_audio()
    warm_protocol()
    app.router.add_get("/v1/live/sessions", live_websocket)
    app.router.add_get("/v1/live/sessions/{session_id}/attach", live_sideband)
    add_live_call_routes(app)
