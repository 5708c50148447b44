"""Realtime calls REST API of the simulator (WebRTC create, SIP call control): a test double.

Endpoints (all need ``Authorization: Bearer …``; errors are OpenAI-style ``{"error": {…}}``):

* ``POST /v1/realtime/calls`` — WebRTC: multipart form with parts ``sdp`` (the offer,
  ``application/sdp``) and optional ``session`` (JSON, checked against the SDK's
  ``RealtimeSessionCreateRequest``); or, as the SDK sends it without a session, the bare
  offer with ``Content-Type: application/sdp``. Answers ``201`` with an answer SDP
  (``application/sdp``) and ``Location: /v1/realtime/calls/rtc_…``; registers an active
  virtual call. An offer not starting with ``v=0`` or an invalid session → ``400``.
* ``POST /v1/realtime/calls/{call_id}/accept`` — SIP: JSON session config (same check);
  the call must be ringing: unknown, already over or given up by the caller → ``404``.
* ``POST …/reject`` — optional ``status_code`` (a SIP status, 400–699; default 603).
* ``POST …/refer`` — ``target_uri`` required, ``tel:…`` or ``sip:…``; ends the call.
* ``POST …/hangup`` — ends the call.

Every successful action is appended to ``SimulatorState.call_actions`` as
``(call_id, action, body)`` — for ``create`` the body is ``{"sdp": offer, "session": …}``,
for the others the JSON body as sent — and changes the
virtual call's ``status``; ending a call closes its sideband WebSocket(s). Calls are played
by :mod:`simulator.virtual_caller` on the sideband (``/v1/realtime?call_id=…``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import BodyPartReader, web
from pydantic import ValidationError

from simulator.http_common import has_bearer, openai_error, unauthorized
from simulator.realtime_protocol import SESSION_ADAPTER
from simulator.sdp import SdpError, answer_for, parse_offer
from simulator.state import STATE_KEY, SimulatorState, VirtualCall

log = structlog.get_logger("simulator.calls")

MAX_PART_BYTES = 256 * 1024
DEFAULT_REJECT_STATUS = 603
REFER_SCHEMES = ("tel:", "sip:", "sips:")

Action = Callable[[SimulatorState, VirtualCall, dict[str, Any]], web.Response]


class _BadRequest(Exception):
    def __init__(self, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.param = message, code, param

    def response(self) -> web.Response:
        return openai_error(400, self.message, self.code, param=self.param)


def validate_session(session: Any, prefix: str = "session") -> dict[str, Any]:
    """A session config checked against the SDK's ``RealtimeSessionCreateRequest``.

    ``prefix`` names where it came from in error params (``""``: the request body itself).
    """
    if not isinstance(session, dict):
        raise _BadRequest(
            f"Invalid '{prefix or 'body'}': expected an object.", "invalid_type", prefix or None
        )
    try:
        SESSION_ADAPTER.validate_python(session)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        # drop the class names pydantic puts into the location of union members
        where = [str(p) for p in first["loc"] if not (isinstance(p, str) and p[:1].isupper())]
        name = ".".join([prefix, *where] if prefix else where) or "body"
        if first["type"] == "missing":
            message, code = f"Missing required parameter: '{name}'.", "missing_required_parameter"
        else:
            message, code = f"Invalid value for '{name}': {first['msg']}.", "invalid_value"
        raise _BadRequest(message, code, name) from None
    return session


async def _read_part(part: BodyPartReader) -> str:
    data = bytearray()
    while chunk := await part.read_chunk():
        data += chunk
        if len(data) > MAX_PART_BYTES:
            raise _BadRequest(f"The '{part.name}' part is too large.", "invalid_value", part.name)
    return data.decode("utf-8", errors="replace")


async def _read_create_form(request: web.Request) -> tuple[str, dict[str, Any] | None]:
    """``(sdp, session)`` from the multipart form, or from a bare ``application/sdp`` body."""
    if request.content_type == "application/sdp":
        return (await request.read()).decode("utf-8", errors="replace"), None
    if request.content_type != "multipart/form-data":
        raise _BadRequest("Expected multipart/form-data (or application/sdp).", "invalid_content_type")
    fields: dict[str, str] = {}
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if isinstance(part, BodyPartReader) and part.name in ("sdp", "session"):
                fields[part.name] = await _read_part(part)
    except (ValueError, AssertionError, KeyError) as exc:  # aiohttp's errors for a malformed form
        raise _BadRequest(f"Malformed multipart body: {exc}", "invalid_multipart") from None
    if "sdp" not in fields:
        raise _BadRequest("Missing required parameter: 'sdp'.", "missing_required_parameter", "sdp")
    if "session" not in fields:
        return fields["sdp"], None
    try:
        session = json.loads(fields["session"])
    except ValueError:
        raise _BadRequest("The 'session' part is not valid JSON.", "invalid_json", "session") from None
    return fields["sdp"], validate_session(session)


async def create_call(request: web.Request) -> web.Response:
    if not has_bearer(request):
        return unauthorized()
    state = request.app[STATE_KEY]
    try:
        sdp, session = await _read_create_form(request)
        try:
            sections = parse_offer(sdp)
        except SdpError as exc:
            raise _BadRequest(str(exc), "invalid_offer", "sdp") from None
    except _BadRequest as bad:
        log.warning("simulator.calls.create_refused", code=bad.code, error=bad.message)
        return bad.response()
    call = state.add_call("webrtc", session=session)
    state.call_actions.append((call.id, "create", {"sdp": sdp, "session": session}))
    log.info("simulator.calls.created", rtc_call_id=call.id, media=[s.kind for s in sections])
    headers = {"Location": f"/v1/realtime/calls/{call.id}"}
    return web.Response(
        status=201, text=answer_for(sections), content_type="application/sdp", headers=headers
    )


def _not_found(call_id: str) -> web.Response:
    return openai_error(404, f"Call '{call_id}' not found.", "call_not_found", param="call_id")


def _accept(state: SimulatorState, call: VirtualCall, body: dict[str, Any]) -> web.Response:
    if call.status != "ringing":
        return openai_error(400, f"Call '{call.id}' was already accepted.", "call_already_accepted")
    call.session = validate_session(body, prefix="")
    call.status = "active"
    return web.Response(status=200)


def _reject(state: SimulatorState, call: VirtualCall, body: dict[str, Any]) -> web.Response:
    if call.status != "ringing":
        return openai_error(400, f"Call '{call.id}' is not ringing.", "call_not_ringing")
    status = body.get("status_code", DEFAULT_REJECT_STATUS)
    if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 699:
        raise _BadRequest(
            "Invalid 'status_code': expected a SIP status 400-699.", "invalid_value", "status_code"
        )
    call.end("rejected")
    return web.Response(status=200)


def _refer(state: SimulatorState, call: VirtualCall, body: dict[str, Any]) -> web.Response:
    target = body.get("target_uri")
    if not isinstance(target, str) or not target:
        raise _BadRequest(
            "Missing required parameter: 'target_uri'.", "missing_required_parameter", "target_uri"
        )
    if not target.lower().startswith(REFER_SCHEMES):
        raise _BadRequest("Invalid 'target_uri': expected a tel: or sip: URI.", "invalid_value", "target_uri")
    if call.status != "active":
        return openai_error(400, f"Call '{call.id}' is not active.", "call_not_active")
    call.end("referred")
    return web.Response(status=200)


def _hangup(state: SimulatorState, call: VirtualCall, body: dict[str, Any]) -> web.Response:
    call.end("hung_up")
    return web.Response(status=200)


ACTIONS: dict[str, Action] = {"accept": _accept, "reject": _reject, "refer": _refer, "hangup": _hangup}


async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise _BadRequest("The request body is not valid JSON.", "invalid_json") from None
    if not isinstance(body, dict):
        raise _BadRequest("The request body must be a JSON object.", "invalid_json")
    return body


async def call_action(request: web.Request) -> web.Response:
    if not has_bearer(request):
        return unauthorized()
    state = request.app[STATE_KEY]
    call_id, name = request.match_info["call_id"], request.match_info["action"]
    action = ACTIONS.get(name)
    if action is None:
        return openai_error(404, f"Unknown call action '{name}'.", "not_found")
    call = state.calls.get(call_id)
    if call is None or call.is_over:
        log.warning("simulator.calls.action_refused", rtc_call_id=call_id, action=name, reason="not_found")
        return _not_found(call_id)
    try:
        body = await _json_body(request)
        response = action(state, call, body)
    except _BadRequest as bad:
        log.warning("simulator.calls.action_refused", rtc_call_id=call_id, action=name, reason=bad.code)
        return bad.response()
    if response.status < 300:
        state.call_actions.append((call_id, name, body))
        log.info("simulator.calls.action", rtc_call_id=call_id, action=name, status=call.status)
    return response


def add_call_routes(app: web.Application) -> None:
    """Mount ``/v1/realtime/calls`` and its call-control actions on the simulator app."""
    app.router.add_post("/v1/realtime/calls", create_call)
    app.router.add_post("/v1/realtime/calls/{call_id}/{action}", call_action)
