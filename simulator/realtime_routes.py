"""The simulator's realtime WebSocket route: ``GET /v1/realtime`` (a test double).

* ``?model=…`` — a normal session: the client streams the caller's audio.
* ``?call_id=rtc_…`` — the sideband of a virtual WebRTC/SIP call (created by
  ``POST /v1/realtime/calls`` or an incoming SIP call, then accepted). A virtual caller plays
  the scenario on it; it closes when the call ends (``/hangup``, ``/refer``, the caller hangs
  up after its last turn). An unknown call id, or one that is not active (still ringing,
  rejected, over), is answered ``404`` before the upgrade, with an OpenAI-style error body.

Both need ``Authorization: Bearer …`` (``401`` otherwise).
"""

from __future__ import annotations

import structlog
from aiohttp import web

from simulator.audio import warm as warm_audio
from simulator.http_common import has_bearer, openai_error, unauthorized
from simulator.probe import PROBE_KEY, ProbeSession
from simulator.realtime import RealtimeSession
from simulator.realtime_protocol import DEFAULT_MODEL
from simulator.realtime_protocol import warm as warm_protocol
from simulator.state import STATE_KEY

log = structlog.get_logger("simulator.realtime")


async def realtime_websocket(request: web.Request) -> web.StreamResponse:
    if not has_bearer(request):
        return unauthorized()
    state = request.app[STATE_KEY]
    model, call_id = request.query.get("model"), request.query.get("call_id")
    if not model and not call_id:
        return openai_error(400, "Missing required query parameter: 'model' (or 'call_id').", "missing_model")
    call = state.calls.get(call_id) if call_id else None
    if call_id and (call is None or call.status != "active"):
        log.warning("simulator.realtime.sideband_refused", rtc_call_id=call_id, status=call and call.status)
        return openai_error(
            404, f"Call '{call_id}' not found or not active.", "call_not_found", param="call_id"
        )
    if call is None and state.refuse_realtime > 0:  # a fault a test asked for (realtime_faults.py)
        state.refuse_realtime -= 1
        log.warning("simulator.realtime.upgrade_refused", remaining=state.refuse_realtime)
        message = "The server is overloaded (simulated)."
        return openai_error(503, message, "server_error", type_="server_error")
    ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024)
    await ws.prepare(request)
    probe = request.app.get(PROBE_KEY)
    if probe is not None and call is None:  # probe mode (load tests): a cheap, timed model
        await ProbeSession(ws, probe, model=model or DEFAULT_MODEL).run()
        return ws
    session = RealtimeSession(ws, state, model=model or DEFAULT_MODEL, call=call)
    await session.run()
    return ws


def add_realtime_routes(app: web.Application) -> None:
    """Mount ``GET /v1/realtime`` (WebSocket) on the simulator app."""
    warm_audio()
    warm_protocol()
    app.router.add_get("/v1/realtime", realtime_websocket)
