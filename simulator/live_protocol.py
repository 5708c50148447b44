"""GPT-Live wire-protocol helpers of the simulator: validation with the SDK's types, errors, sessions.

The ``openai`` SDK's ``openai.types.live`` are the authority. A client event is valid when

1. it is a JSON object whose ``type`` is one of the ``ClientEvent`` union's;
2. it validates against that union (the SDK models), and against the ``ClientEventParam``
   union, whose TypedDicts say which keys are required even when nullable (``delegation_id``
   of the appends must be sent, ``null`` or an id);
3. it has no key the SDK's models do not declare, at any depth (the SDK models accept extra
   keys; the real endpoint rejects unknown fields): ``unknown_parameter``, ``param`` the path.

Errors are ``{"type": "error", "event_id", "client_event_id", "error": {"type":
"invalid_request_error", "code", "message", "param", "client_event_id"}}``. Validators are
built here, once, at import.

Codes the simulator raises for the real server's semantic errors whose exact code was not
found in any source (docs/protocol-live.md §1, §3) are its own: ``session_not_started``,
``session_already_started``, ``session_closing``, ``delegation_mode_mismatch``,
``fixture_active``; the rest follow OpenAI's usual ones (``invalid_value``,
``unknown_parameter``, ``missing_required_parameter``, ``invalid_json``).
"""

from __future__ import annotations

import math
import time
import typing
from typing import Any

from openai.types.live import (
    ClientEvent,
    ClientEventParam,
    ConnectClientEvent,
    ConnectClientEventParam,
    SessionConfig,
    SessionResource,
    SessionUpdateConfig,
)
from pydantic import BaseModel, TypeAdapter, ValidationError

from simulator.live_audio import DEFAULT_FORMAT, RATES
from simulator.protocol_error import ProtocolError

APPEND = "session.input_audio.append"
DEFAULT_VOICE = "marin"
MAX_APPEND_TOKENS = 500  # commentary, thinking, instructions: "must not exceed 500 tokens"
MAX_INSTRUCTIONS_TOKENS = 16_384
MAX_INPUT_ITEMS = 128
SESSION_LIFETIME_S = 2 * 3600
# Token estimate of the simulator: ceil(characters / 4), OpenAI's rule of thumb for English.
CHARS_PER_TOKEN = 4

CLIENT_EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(ClientEvent)
CLIENT_EVENT_PARAM_ADAPTER: TypeAdapter[Any] = TypeAdapter(ClientEventParam)
# The sideband of a WebRTC/SIP session (``/v1/live/sessions/{id}/attach``): no session.start,
# no input audio, transport.dtmf.send (SIP).
CONNECT_EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(ConnectClientEvent)
CONNECT_EVENT_PARAM_ADAPTER: TypeAdapter[Any] = TypeAdapter(ConnectClientEventParam)


def _types_of(union: Any) -> frozenset[str]:
    return frozenset(
        typing.get_args(model.model_fields["type"].annotation)[0]
        for model in typing.get_args(typing.get_args(union)[0])
    )


CLIENT_EVENT_TYPES = _types_of(ClientEvent)
CONNECT_EVENT_TYPES = _types_of(ConnectClientEvent)
RESOURCE_FIELDS = frozenset(SessionResource.model_fields)
# Settable at session.start only: anything of SessionConfig that SessionUpdateConfig lacks.
IMMUTABLE_FIELDS: frozenset[str] = frozenset(SessionConfig.model_fields) - frozenset(
    SessionUpdateConfig.model_fields
)
_APPEND_KEYS = frozenset({"type", "audio", "event_id"})


LiveError = ProtocolError  # the refusals of this API


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def error_event(error: LiveError, client_event_id: str | None) -> dict[str, Any]:
    body = {"type": "invalid_request_error", "code": error.code, "message": error.message}
    body |= {"param": error.param, "client_event_id": client_event_id}
    return {"type": "error", "client_event_id": client_event_id, "error": body}


# --- validation ----------------------------------------------------------------------------


def validate_client_event(data: dict[str, Any], *, sideband: bool = False) -> None:
    """Check a client event against the SDK's types (see the module doc); raises :class:`LiveError`.

    ``sideband``: against the sideband's ``ConnectClientEvent`` union instead."""
    event_type = data.get("type")
    if event_type is None:
        raise LiveError("missing_required_parameter", "Missing required parameter: 'type'.", "type")
    known = CONNECT_EVENT_TYPES if sideband else CLIENT_EVENT_TYPES
    if not isinstance(event_type, str) or event_type not in known:
        supported = ", ".join(f"'{t}'" for t in sorted(known))
        message = f"Invalid value: '{event_type}'. Supported values are: {supported}."
        raise LiveError("invalid_value", message, "type")
    if event_type == APPEND and _plain_append(data):
        return  # the hot path: every 20 ms of caller audio
    try:
        if sideband:
            model = CONNECT_EVENT_ADAPTER.validate_python(data)
            CONNECT_EVENT_PARAM_ADAPTER.validate_python(data)
        else:
            model = CLIENT_EVENT_ADAPTER.validate_python(data)
            CLIENT_EVENT_PARAM_ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise _describe(exc, event_type) from exc
    if event_type == "session.update":
        check_update_fields(data["session"])
    if (where := undeclared_key(model)) is not None:
        raise LiveError("unknown_parameter", f"Unknown parameter: '{where}'.", where)


def _plain_append(data: dict[str, Any]) -> bool:
    event_id = data.get("event_id")
    return (
        data.keys() <= _APPEND_KEYS
        and isinstance(data.get("audio"), str)
        and (event_id is None or isinstance(event_id, str))
    )


def undeclared_key(value: Any, path: str = "") -> str | None:
    """The path of the first key no SDK model declares (``session.audio.foo``), or None.

    Walks a validated model: the SDK's models keep undeclared keys as ``model_extra``."""
    if isinstance(value, BaseModel):
        for key in value.model_extra or {}:
            return f"{path}.{key}" if path else key
        for name in type(value).model_fields:
            found = undeclared_key(getattr(value, name), f"{path}.{name}" if path else name)
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = undeclared_key(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _describe(exc: ValidationError, event_type: str) -> LiveError:
    # The unions have no pydantic discriminator: errors come for every variant. Keep the
    # variant whose ``type`` literal matched (the one without a literal error on ``type``).
    groups: dict[str, list[Any]] = {}
    for err in exc.errors(include_url=False):
        groups.setdefault(str(err["loc"][0]) if err["loc"] else "", []).append(err)
    for errors in groups.values():
        if any(e["type"] == "literal_error" and tuple(e["loc"][1:]) == ("type",) for e in errors):
            continue
        first = errors[0]
        # Drop the class names pydantic puts into the location of nested unions.
        parts = [p for p in first["loc"][1:] if not (isinstance(p, str) and p[:1].isupper())]
        param = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
        if first["type"] == "missing":
            return LiveError("missing_required_parameter", f"Missing required parameter: '{param}'.", param)
        return LiveError("invalid_value", f"Invalid value for '{param}': {first['msg']}.", param)
    return LiveError("invalid_value", f"Invalid value: '{event_type}'.", "type")


def check_update_fields(update: dict[str, Any]) -> None:
    for key in update:
        if key in IMMUTABLE_FIELDS:
            message = (
                f"'session.{key}' cannot be changed after startup "
                "(session.update changes delegation settings and triggers only)."
            )
            raise LiveError("invalid_value", message, f"session.{key}")


# --- sessions ------------------------------------------------------------------------------


def resolve_session(config: dict[str, Any], session_id: str, *, media: bool = False) -> dict[str, Any]:
    """The ``SessionResource`` of ``session.started``: the config with the server's defaults
    (``media``: a WebRTC/SIP session, whose media format is negotiated: no ``audio.format``).

    Raises :class:`LiveError` for what the real server refuses beyond the types: a G.711 rate
    other than 8000, instructions over 16,384 tokens, more than 128 ``input`` items."""
    fmt = dict(((config.get("audio") or {}).get("format")) or DEFAULT_FORMAT)
    if fmt["rate"] not in RATES[fmt["type"]]:
        allowed = " or ".join(str(r) for r in RATES[fmt["type"]])
        message = f"Invalid 'session.audio.format.rate': {fmt['type']} supports {allowed} Hz."
        raise LiveError("invalid_value", message, "session.audio.format.rate")
    instructions = config.get("instructions")
    if isinstance(instructions, str) and estimate_tokens(instructions) > MAX_INSTRUCTIONS_TOKENS:
        message = f"Instructions must not exceed {MAX_INSTRUCTIONS_TOKENS} tokens."
        raise LiveError("invalid_value", message, "session.instructions")
    items = config.get("input") or []
    if len(items) > MAX_INPUT_ITEMS:
        message = f"'session.input' must not have more than {MAX_INPUT_ITEMS} items."
        raise LiveError("invalid_value", message, "session.input")
    output = dict((config.get("audio") or {}).get("output") or {})
    output["voice"] = output.get("voice") or DEFAULT_VOICE
    delegation = dict(config.get("delegation") or {"type": "client"})
    if delegation.get("acknowledgement_delay_ms") is None:
        delegation["acknowledgement_delay_ms"] = 400 if delegation["type"] == "decisions" else 0
    resource: dict[str, Any] = {
        "id": session_id,
        "expires_at": int(time.time()) + SESSION_LIFETIME_S,
        "model": config["model"],
        "status": "active",
        **{
            k: v
            for k, v in config.items()
            if k in RESOURCE_FIELDS and k not in ("model", "audio", "delegation")
        },
        "audio": {"output": output} if media else {"format": fmt, "output": output},
        "delegation": delegation,
    }
    resource.setdefault("store", False)
    resource.setdefault("input", [])
    return resource


def apply_update(session: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """The session after a (validated) ``session.update``: delegation settings merge, triggers
    replace; raises :class:`LiveError` for a change of delegation type."""
    merged = dict(session)
    if update.get("delegation") is not None:
        current, wanted = session["delegation"], update["delegation"]
        if wanted["type"] != current["type"]:
            message = f"Cannot change the delegation type of a session (it is '{current['type']}')."
            raise LiveError("invalid_value", message, "session.delegation.type")
        merged["delegation"] = {**current, **{k: v for k, v in wanted.items() if v is not None}}
    if "triggers" in update and update["triggers"] is not None:
        merged["triggers"] = update["triggers"]
    return merged


def restored_user_turns(config: dict[str, Any]) -> int:
    """How many caller turns the ``input`` history already holds (a resumed call)."""
    return sum(1 for item in config.get("input") or [] if item.get("role") == "user")


def warm() -> None:
    """Exercise the validators once so their first real use is fast."""
    validate_client_event({"type": "session.start", "session": {"model": "gpt-live-1.1"}})
    validate_client_event({"type": "session.commentary.append", "content": "x", "delegation_id": None})
