"""The shape the call controller's handlers rely on, checked once at the boundary.

Server events arrive as plain dicts (no pydantic on the hot path). The handlers read a few
fields each and assume their JSON types: ids and texts are strings, ``response``/``item``/
``error`` are objects, ``audio_end_ms`` is a number of milliseconds within a day (a JSON
integer may have any number of digits: compared, never converted to a float). A server (or
a proxy, or a bug) that sends something else must not make a handler raise;
:func:`shape_problem` names the first field of the wrong type so that the event is logged
and skipped instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# top-level fields that, when present and not null, must be strings
_STRINGS = ("item_id", "response_id", "call_id", "delta", "transcript", "name", "arguments",
            "previous_item_id", "event")  # fmt: skip
_OBJECTS = ("response", "item", "error")
_NESTED_STRINGS: dict[str, tuple[str, ...]] = {
    "response": ("id", "status"),
    "item": ("id", "type", "role", "name", "call_id", "arguments", "output"),
    "error": ("event_id",),
}
_NESTED_OBJECTS: dict[str, tuple[str, ...]] = {
    "response": ("metadata", "status_details", "usage"),
    "item": (),
    "error": (),
}
# fields without which an event of that type cannot be acted on at all
_REQUIRED_STRINGS: dict[str, tuple[str, ...]] = {
    "conversation.item.input_audio_transcription.completed": ("item_id",),
    "conversation.item.input_audio_transcription.failed": ("item_id",),
    "response.function_call_arguments.done": ("call_id",),
}
MAX_AUDIO_END_MS = 24 * 3600 * 1000  # no call plays a day of audio in one item


def shape_problem(event: Mapping[str, Any]) -> str | None:
    """The first field of ``event`` whose type the handlers cannot use; None when it is fine."""
    for key in _REQUIRED_STRINGS.get(str(event.get("type")), ()):
        if not isinstance(event.get(key), str):
            return f"{key} missing or not a string"
    for key in _STRINGS:
        if not _optional(event.get(key), str):
            return f"{key} is not a string"
    for key in _OBJECTS:
        value = event.get(key)
        if not _optional(value, dict):
            return f"{key} is not an object"
        if not value:
            continue
        for sub in _NESTED_STRINGS[key]:
            if not _optional(value.get(sub), str):
                return f"{key}.{sub} is not a string"
        for sub in _NESTED_OBJECTS[key]:
            if not _optional(value.get(sub), dict):
                return f"{key}.{sub} is not an object"
    metadata = (event.get("response") or {}).get("metadata") or {}
    if not _optional(metadata.get("purpose"), str):
        return "response.metadata.purpose is not a string"
    content = (event.get("item") or {}).get("content")
    if not _optional(content, list) or not all(_content_part(p) for p in content or ()):
        return "item.content is not a list of content parts"
    end = event.get("audio_end_ms")
    if end is not None and not _audio_position(end):
        return "audio_end_ms is not a number of milliseconds within a day"
    return None


def _audio_position(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return 0 <= value <= MAX_AUDIO_END_MS  # an int of any size compares without overflow


def _optional(value: object, kind: type) -> bool:
    return value is None or isinstance(value, kind)


def _content_part(part: object) -> bool:
    return isinstance(part, dict) and all(
        _optional(part.get(key), str) for key in ("type", "text", "transcript")
    )
