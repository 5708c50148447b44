"""GPT-Live sessions REST API of the simulator: WebRTC session creation and SIP call control.

Endpoints (all need ``Authorization: Bearer …``; errors are OpenAI-style ``{"error": {…}}``):

* ``POST /v1/live/sessions`` — ``client.live.create(session=…, transport={"type": "webrtc",
  "sdp": offer})``: JSON ``{"session": MediaSessionConfigParam, "transport": {…}}``. Answers
  ``200 {"session": {"id": "live_…"}, "transport": {"type": "webrtc", "sdp": answer}}`` (the
  id is in the body, no ``Location``) and registers an active virtual WebRTC call.
* ``POST /v1/live/sessions/{session_id}/accept`` — SIP (``client.live.sessions.accept``):
  ``{"session": {"type": "live", "model", …}}`` (no ``audio.format``: SIP negotiates); the
  call must be ringing (sent by :func:`simulator.live_sip.send_live_incoming_call`).
* ``…/reject`` ``{"status_code": 300-699}``; ``…/refer`` ``{"target_uri": "tel:…" | "sip:…"}``
  (ends the call); ``…/hangup`` (ends it).

Bodies are checked against the SDK's param TypedDicts (``openai.types.live``): required keys
and types with pydantic, then undeclared keys at any depth (``unknown_parameter``). Unknown,
already-ended or not-yet-accepted sessions → ``404``. Calls live in ``SimulatorState.live_calls``;
every successful action is appended to ``SimulatorState.call_actions`` as ``(session_id,
action, body)``. The sideband (``GET …/{session_id}/attach``) is :mod:`simulator.live_sideband`.
"""

from __future__ import annotations

import collections.abc
import json
import types
import typing
from collections.abc import Callable
from typing import Any, Literal

import structlog
from aiohttp import web
from openai.types.live import live_create_params, session_accept_params
from openai.types.live.session_refer_params import SessionReferParams
from openai.types.live.session_reject_params import SessionRejectParams
from pydantic import TypeAdapter, ValidationError
from typing_extensions import is_typeddict

from simulator.http_common import has_bearer, openai_error, unauthorized
from simulator.live_protocol import LiveError
from simulator.realtime_items import new_id
from simulator.sdp import SdpError, answer_for, parse_offer
from simulator.state import STATE_KEY, SimulatorState, VirtualCall

log = structlog.get_logger("simulator.live_calls")

REFER_SCHEMES = ("tel:", "sip:", "sips:")
_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}

Action = Callable[[VirtualCall, dict[str, Any]], None]


def check_body(body: Any, params: Any) -> dict[str, Any]:
    """``body`` checked against the SDK TypedDict ``params``; raises :class:`LiveError`."""
    if not isinstance(body, dict):
        raise LiveError("invalid_json", "The request body must be a JSON object.")
    adapter = _ADAPTERS.get(params) or _ADAPTERS.setdefault(params, TypeAdapter(params))
    try:
        adapter.validate_python(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = [p for p in first["loc"] if not (isinstance(p, str) and (p[:1].isupper() or "[" in p))]
        name = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in where).lstrip(".") or "body"
        if first["type"] == "missing":
            raise LiveError(
                "missing_required_parameter", f"Missing required parameter: '{name}'.", name
            ) from None
        raise LiveError("invalid_value", f"Invalid value for '{name}': {first['msg']}.", name) from None
    if (where := undeclared_param(body, params)) is not None:
        raise LiveError("unknown_parameter", f"Unknown parameter: '{where}'.", where)
    return body


def undeclared_param(value: Any, hint: Any, path: str = "") -> str | None:
    """The path of the first key of ``value`` that the TypedDict ``hint`` (at any depth) does not
    declare, or None. In a union, a key counts as declared if any variant that fits declares it."""
    if is_typeddict(hint):
        if not isinstance(value, dict):
            return None
        hints = typing.get_type_hints(hint)
        for key in value:
            if key not in hints:
                return f"{path}.{key}" if path else key
        for key, item in value.items():
            if (found := undeclared_param(item, hints[key], f"{path}.{key}" if path else key)) is not None:
                return found
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        results = [undeclared_param(value, arg, path) for arg in typing.get_args(hint) if _fits(value, arg)]
        return None if not results or None in results else results[0]
    if origin in (list, collections.abc.Iterable, collections.abc.Sequence) and isinstance(value, list):
        (item_hint,) = typing.get_args(hint) or (Any,)
        for index, item in enumerate(value):
            if (found := undeclared_param(item, item_hint, f"{path}[{index}]")) is not None:
                return found
    return None


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` can be the union member ``hint`` (a TypedDict's literal keys must match)."""
    if not is_typeddict(hint):
        return not isinstance(value, dict) or typing.get_origin(hint) in (dict, collections.abc.Mapping)
    if not isinstance(value, dict):
        return False
    for key, field in typing.get_type_hints(hint).items():
        if typing.get_origin(field) is Literal and key in value and value[key] not in typing.get_args(field):
            return False
    return True


# --- actions -------------------------------------------------------------------------------


def _accept(call: VirtualCall, body: dict[str, Any]) -> None:
    if call.status != "ringing":
        raise LiveError("session_already_accepted", f"Session '{call.id}' was already accepted.")
    session = check_body(body, session_accept_params.SessionAcceptParams)["session"]
    call.session = {k: v for k, v in session.items() if k != "type"}
    call.status = "active"


def _reject(call: VirtualCall, body: dict[str, Any]) -> None:
    if call.status != "ringing":
        raise LiveError("session_not_ringing", f"Session '{call.id}' is not ringing.")
    status = check_body(body, SessionRejectParams)["status_code"]
    if not 300 <= status <= 699:
        raise LiveError(
            "invalid_value", "Invalid 'status_code': expected a SIP status 300-699.", "status_code"
        )
    call.end("rejected")


def _refer(call: VirtualCall, body: dict[str, Any]) -> None:
    target = check_body(body, SessionReferParams)["target_uri"]
    if not target.strip() or not target.lower().startswith(REFER_SCHEMES):
        raise LiveError("invalid_value", "Invalid 'target_uri': expected a tel: or sip: URI.", "target_uri")
    if call.status != "active":
        raise LiveError("session_not_active", f"Session '{call.id}' is not active.")
    call.end("referred")


def _hangup(call: VirtualCall, body: dict[str, Any]) -> None:
    call.end("hung_up")


ACTIONS: dict[str, Action] = {"accept": _accept, "reject": _reject, "refer": _refer, "hangup": _hangup}


def _bad(error: LiveError, status: int = 400) -> web.Response:
    return openai_error(status, error.message, error.code, param=error.param)


async def _json(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        raise LiveError("invalid_json", "The request body is not valid JSON.") from None


async def create_session(request: web.Request) -> web.Response:
    if not has_bearer(request):
        return unauthorized()
    state = request.app[STATE_KEY]
    try:
        body = check_body(await _json(request), live_create_params.LiveCreateParams)
        try:
            sections = parse_offer(body["transport"]["sdp"])
        except SdpError as exc:
            raise LiveError("invalid_offer", str(exc), "transport.sdp") from None
    except LiveError as error:
        log.warning("simulator.live_calls.create_refused", code=error.code, error=error.message)
        return _bad(error)
    call = add_live_call(state, "webrtc", session=body["session"])
    state.call_actions.append((call.id, "create", body))
    log.info("simulator.live_calls.created", live_session_id=call.id, media=[s.kind for s in sections])
    answer = {"type": "webrtc", "sdp": answer_for(sections)}
    return web.json_response({"session": {"id": call.id}, "transport": answer})


def add_live_call(
    state: SimulatorState,
    kind: Literal["webrtc", "sip"],
    *,
    session_id: str | None = None,
    session: dict[str, Any] | None = None,
    sip_headers: list[dict[str, str]] | None = None,
) -> VirtualCall:
    """Register a virtual Live call: WebRTC sessions start active, SIP calls ringing."""
    call = VirtualCall(
        id=session_id or new_id("live"),
        kind=kind,
        status="active" if kind == "webrtc" else "ringing",
        session=session,
        sip_headers=list(sip_headers or []),
    )
    state.live_calls[call.id] = call
    return call


async def session_action(request: web.Request) -> web.Response:
    if not has_bearer(request):
        return unauthorized()
    state = request.app[STATE_KEY]
    session_id, name = request.match_info["session_id"], request.match_info["action"]
    action = ACTIONS.get(name)
    if action is None:
        return openai_error(404, f"Unknown session action '{name}'.", "not_found")
    call = state.live_calls.get(session_id)
    if call is None or call.is_over:
        log.warning(
            "simulator.live_calls.action_refused", live_session_id=session_id, action=name, reason="not_found"
        )
        message = f"Session '{session_id}' not found."
        return openai_error(404, message, "session_not_found", param="session_id")
    try:
        body = await _json(request)
        action(call, body)
    except LiveError as error:
        log.warning(
            "simulator.live_calls.action_refused", live_session_id=session_id, action=name, reason=error.code
        )
        return _bad(error)
    state.call_actions.append((session_id, name, body))
    log.info("simulator.live_calls.action", live_session_id=session_id, action=name, status=call.status)
    return web.Response(status=200)


def add_live_call_routes(app: web.Application) -> None:
    app.router.add_post("/v1/live/sessions", create_session)
    app.router.add_post("/v1/live/sessions/{session_id}/{action}", session_action)
