"""A text-model reply read from its JSON: the few fields the supervisor uses, shape-checked.

The SDK would build its full ``Response`` / ``ChatCompletion`` model from the reply first
(``construct_type`` over every field, with defaults and nested models): 0.3 ms of event loop
per reply, for a result of which the supervisor reads the text, the tool calls and two token
counts. These functions read exactly those from the decoded JSON, with the API's own field
names, and refuse a reply of the wrong shape with :class:`ReplyShapeError` (never another
exception), where the SDK's lenient construction would have handed on missing attributes.

Items the supervisor does not use (reasoning, web search calls, refusals, annotations) are
skipped, as before.
"""

from __future__ import annotations

import json
from typing import Any, Final

import httpx2
import structlog

from supervisor.turns import ModelTurn, ToolCall, TurnUsage

log = structlog.get_logger("supervisor")


# a supervisor turn's reply is a few KiB; past this it is refused before it is all in memory
MAX_REPLY_BYTES: Final = 4 * 1024 * 1024


class ReplyShapeError(ValueError):
    """The reply is not JSON, is too large, or a field the supervisor reads has the wrong type."""


async def read_capped(response: httpx2.Response, limit: int = MAX_REPLY_BYTES) -> bytes:
    """The body of a streamed reply, refused once it passes ``limit`` bytes: a declared
    ``Content-Length`` at once, a compressed body as it inflates (never all of a bomb)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ReplyShapeError(f"reply of {declared} bytes is over {limit}")
    parts: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise ReplyShapeError(f"reply over {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def decode(content: bytes) -> dict[str, Any]:
    try:
        data = json.loads(content)
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, or absurdly deep
        raise ReplyShapeError(f"reply is not JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise ReplyShapeError(f"reply is a JSON {type(data).__name__}, not an object")
    return data


def responses_turn(data: dict[str, Any]) -> ModelTurn:
    """A Responses API reply (``POST /responses``): message text and ``function_call`` items."""
    _refuse_error(data)
    if data.get("status") == "failed":
        raise ReplyShapeError("the response failed")
    text: list[str] = []
    calls: list[ToolCall] = []
    for item in _list(data.get("output"), "output"):
        kind = _dict(item, "output item").get("type")
        if kind == "function_call":
            calls.append(ToolCall(
                id=_str(item, "call_id"), name=_str(item, "name"), arguments=_str(item, "arguments"),
            ))  # fmt: skip
        elif kind == "message":
            for part in _list(item.get("content"), "message content"):
                if _dict(part, "content part").get("type") == "output_text":
                    text.append(_str(part, "text"))
    usage = _usage(data, "input_tokens", "output_tokens")
    return ModelTurn(text="".join(text).strip(), tool_calls=calls, usage=usage)


def chat_turn(data: dict[str, Any]) -> ModelTurn:
    """A chat completion (``POST /chat/completions``): the first choice's message."""
    _refuse_error(data)
    choices = _list(data.get("choices"), "choices")
    if not choices:
        raise ReplyShapeError("chat completion has no choices")
    message = _dict(_dict(choices[0], "choice").get("message"), "message")
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise ReplyShapeError("message content is not a string")
    calls = []
    for call in _list(message.get("tool_calls") or [], "tool_calls"):
        if _dict(call, "tool call").get("type") == "function":
            function = _dict(call.get("function"), "function")
            name, arguments = _str(function, "name"), _str(function, "arguments")
            calls.append(ToolCall(id=_str(call, "id"), name=name, arguments=arguments))
    usage = _usage(data, "prompt_tokens", "completion_tokens")
    return ModelTurn(text=(content or "").strip(), tool_calls=calls, usage=usage)


def _refuse_error(data: dict[str, Any]) -> None:
    """An error object in a 200 reply (a proxy's, or a failed response): its message, refused."""
    error = data.get("error")
    if isinstance(error, dict) and error:
        raise ReplyShapeError(f"the reply is an error: {str(error.get('message') or error)[:200]}")


def _usage(data: dict[str, Any], input_key: str, output_key: str) -> TurnUsage:
    """Token counts, for the decision's record: a count that is not one is logged and taken as
    0; the answer is not thrown away over its accounting."""
    usage = data.get("usage")
    if not isinstance(usage, dict):
        if usage is not None:
            log.warning("supervisor.reply_usage_invalid", field="usage")
        return TurnUsage()
    return TurnUsage(_count(usage, input_key), _count(usage, output_key))


def _count(usage: dict[str, Any], key: str) -> int:
    value = usage.get(key, 0)
    if type(value) is not int or value < 0:
        log.warning("supervisor.reply_usage_invalid", field=key)
        return 0
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ReplyShapeError(f"{what} is not a list")
    return value


def _dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ReplyShapeError(f"{what} is not an object")
    return value


def _str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise ReplyShapeError(f"{key} is not a string")
    return value
