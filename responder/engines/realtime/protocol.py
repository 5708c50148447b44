"""Every Realtime GA client event the service sends, built in one place.

The builders return plain dicts typed as :class:`TypedDict` (no pydantic: some are on the
hot path and all go straight to ``json.dumps``); their shapes follow the ``openai`` SDK's GA
types (``openai.types.realtime``), which the simulator validates every event against. The
audio append is pre-split into a prefix and suffix so that caller audio is framed by string
concatenation, never by building and serialising a dict.
"""

from __future__ import annotations

from typing import Any, Final, Literal, NotRequired, TypedDict

from responder.core.engine import Line, Purpose

AUDIO_APPEND_PREFIX: Final = '{"type":"input_audio_buffer.append","audio":"'
AUDIO_APPEND_SUFFIX: Final = '"}'

ClientEventType = Literal[
    "session.update", "conversation.item.create", "conversation.item.truncate",
    "response.create", "response.cancel", "input_audio_buffer.append",
]  # fmt: skip


class ClientEvent(TypedDict):
    type: ClientEventType
    event_id: NotRequired[str]


class SessionUpdate(ClientEvent):
    session: dict[str, Any]


class ItemCreate(ClientEvent):
    item: dict[str, Any]


class ItemTruncate(ClientEvent):
    item_id: str
    content_index: int
    audio_end_ms: int


class ResponseCreate(ClientEvent):
    response: dict[str, Any]


class ResponseCancel(ClientEvent):
    response_id: str


def session_update(session: dict[str, Any]) -> SessionUpdate:
    return {"type": "session.update", "session": session}


def item_create(item: dict[str, Any]) -> ItemCreate:
    return {"type": "conversation.item.create", "item": item}


def function_call_output(tool_call_id: str, output: str) -> ItemCreate:
    """A tool call's answer (the supervisor's text, or a call-control tool's status)."""
    return item_create({"type": "function_call_output", "call_id": tool_call_id, "output": output})


def item_truncate(item_id: str, audio_end_ms: int) -> ItemTruncate:
    """Barge-in: the assistant item ends where the caller stopped hearing it."""
    return {
        "type": "conversation.item.truncate",
        "item_id": item_id,
        "content_index": 0,
        "audio_end_ms": audio_end_ms,
    }


def response_cancel(response_id: str) -> ResponseCancel:
    return {"type": "response.cancel", "response_id": response_id}


def say_exactly(line: Line) -> dict[str, Any]:
    """A response body that makes the responder say ``line`` and nothing else; out of band
    (``conversation: "none"``) for a hold line, which must not enter the conversation."""
    instructions = f'Say exactly: "{line.text}" Nothing else.'
    if line.guidance:
        instructions += " " + line.guidance
    body: dict[str, Any] = {"instructions": instructions, "tools": [], "tool_choice": "none"}
    if line.out_of_band:
        body = {"conversation": "none", "output_modalities": ["audio"], **body}
    return body


def response_create(event_id: str, purpose: Purpose, line: Line | None = None) -> ResponseCreate:
    """Ask for a response, tagged with why (``metadata.purpose``, echoed in ``response.created``)."""
    body = say_exactly(line) if line is not None else {}
    return {
        "type": "response.create",
        "event_id": event_id,
        "response": {**body, "metadata": {"purpose": purpose}},
    }


def audio_append(b64_audio: str) -> str:
    """Hot path: the ``input_audio_buffer.append`` frame, as text."""
    return AUDIO_APPEND_PREFIX + b64_audio + AUDIO_APPEND_SUFFIX
