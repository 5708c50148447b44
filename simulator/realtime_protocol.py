"""Realtime GA wire-protocol helpers of the simulator: validation with the SDK's types, sessions.

The ``openai`` SDK's types are the authority. Their pydantic validators are built here, once,
at import: built lazily they would stall the event loop in the middle of the first call.
"""

from __future__ import annotations

import time
import typing
from typing import Any

from openai.types.realtime import RealtimeClientEvent, RealtimeSessionCreateRequest
from pydantic import TypeAdapter, ValidationError

from simulator.protocol_error import ProtocolError
from simulator.realtime_items import new_id
from simulator.vad import DEFAULT_SILENCE_MS

DEFAULT_MODEL = "gpt-realtime"
APPEND = "input_audio_buffer.append"
DEFAULT_FORMAT: dict[str, Any] = {"type": "audio/pcm", "rate": 24000}

CLIENT_EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(RealtimeClientEvent)
SESSION_ADAPTER: TypeAdapter[RealtimeSessionCreateRequest] = TypeAdapter(RealtimeSessionCreateRequest)

# Every ``type`` the SDK's RealtimeClientEvent union accepts.
CLIENT_EVENT_TYPES: frozenset[str] = frozenset(
    typing.get_args(model.model_fields["type"].annotation)[0]
    for model in typing.get_args(typing.get_args(RealtimeClientEvent)[0])
)

_NESTED_SESSION_KEYS = frozenset({"audio", "input", "output"})


ClientEventError = ProtocolError  # the refusals of this API


def default_session(model: str) -> dict[str, Any]:
    """The session the server starts with (``session.created``), checked against the SDK type."""
    session: dict[str, Any] = {
        "type": "realtime",
        "object": "realtime.session",
        "id": new_id("sess"),
        "model": model,
        "output_modalities": ["audio"],
        "instructions": "You are a helpful, witty, and friendly AI.",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "expires_at": int(time.time()) + 3600,
        "audio": {
            "input": {
                "format": dict(DEFAULT_FORMAT),
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": DEFAULT_SILENCE_MS,
                    "idle_timeout_ms": None,
                    "create_response": True,
                    "interrupt_response": True,
                },
            },
            "output": {"format": dict(DEFAULT_FORMAT), "voice": "marin", "speed": 1.0},
        },
    }
    SESSION_ADAPTER.validate_python(session)
    return session


def merge_session(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``session.update`` semantics: the nested audio config merges, every other field replaces."""
    merged = dict(base)
    for key, value in update.items():
        if key in _NESTED_SESSION_KEYS and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_session(merged[key], value)
        else:
            merged[key] = value
    return merged


def apply_session_update(current: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """The session after ``update``; raises :class:`ClientEventError` where the real API refuses."""
    if update.get("type") != "realtime":
        raise ClientEventError("invalid_value", "Cannot change the session type.", "session.type")
    if update.get("model") not in (None, current.get("model")):
        raise ClientEventError("invalid_value", "Cannot change the model of a session.", "session.model")
    merged = merge_session(current, update)
    try:
        SESSION_ADAPTER.validate_python(merged)
    except ValidationError as exc:
        raise ClientEventError(
            "invalid_value", f"Invalid session: {exc.errors()[0]['msg']}.", "session"
        ) from exc
    return merged


def validate_client_event(data: dict[str, Any]) -> None:
    """Check a client event against the SDK's ``RealtimeClientEvent`` union.

    Raises :class:`ClientEventError` with the API's code/message/param style.
    """
    event_type = data.get("type")
    if event_type is None:
        raise ClientEventError("missing_required_parameter", "Missing required parameter: 'type'.", "type")
    if not isinstance(event_type, str) or event_type not in CLIENT_EVENT_TYPES:
        supported = ", ".join(f"'{t}'" for t in sorted(CLIENT_EVENT_TYPES))
        message = f"Invalid value: '{event_type}'. Supported values are: {supported}."
        raise ClientEventError("invalid_value", message, "type")
    try:
        CLIENT_EVENT_ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise _describe(exc, event_type) from exc


def _describe(exc: ValidationError, event_type: str) -> ClientEventError:
    # The SDK's union has no pydantic discriminator: errors come for every variant. Keep the
    # variant whose ``type`` literal matched (the one without a literal error on ``type``).
    groups: dict[str, list[Any]] = {}
    for err in exc.errors(include_url=False):
        groups.setdefault(str(err["loc"][0]) if err["loc"] else "", []).append(err)
    for errors in groups.values():
        if any(e["type"] == "literal_error" and tuple(e["loc"][1:]) == ("type",) for e in errors):
            continue
        first = errors[0]
        # Drop the class names pydantic puts into the location of nested unions.
        param = ".".join(str(p) for p in first["loc"][1:] if not (isinstance(p, str) and p[:1].isupper()))
        if first["type"] == "missing":
            return ClientEventError(
                "missing_required_parameter", f"Missing required parameter: '{param}'.", param
            )
        return ClientEventError("invalid_value", f"Invalid value for '{param}': {first['msg']}.", param)
    return ClientEventError("invalid_value", f"Invalid value: '{event_type}'.", "type")


def error_event(code: str, message: str, param: str | None, client_event_id: str | None) -> dict[str, Any]:
    error = {"type": "invalid_request_error", "code": code, "message": message, "param": param}
    return {"type": "error", "error": {**error, "event_id": client_event_id}}


def warm() -> None:
    """Exercise the validators once so their first real use is fast."""
    CLIENT_EVENT_ADAPTER.validate_python({"type": "response.create", "response": {"conversation": "none"}})
    default_session(DEFAULT_MODEL)
