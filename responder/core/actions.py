"""The responder's call-control tools: ``escalate_to_human`` and ``end_call``.

The realtime model calls one of them; the call controller says a short line, waits until
the caller has heard it, then asks the transport's :class:`CallActions` to act (Twilio:
REST call update; SIP and WebRTC: ``refer`` / ``hangup``; WebSocket: close). Every action is
recorded in the call's history as an ``action`` item carrying an :class:`ActionRecord`, and
logged as one ``call.action`` event, the way supervisor decisions are.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

ESCALATE_TOOL = "escalate_to_human"
END_CALL_TOOL = "end_call"
ActionName = Literal["escalate_to_human", "end_call"]
ActionOutcome = Literal["done", "failed", "no_transfer_target"]

TRANSFER_LINE = "I'm connecting you with a colleague now. Please stay on the line."
NO_TRANSFER_LINE = (
    "I've passed your request to a colleague, who will get back to you. Thanks for calling."
)
GOODBYE_LINE = "Thanks for calling Northwind Outfitters. Goodbye!"
# said when the service ends a call itself (this instance is shutting down after its drain)
DRAIN_LINE = (
    "I'm sorry, I have to end our call now for system maintenance. "
    "Please call us back in a few minutes. Goodbye!"
)
SERVICE_DRAINING = "service_draining"

_REASON_PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "reason": {
            "type": "string",
            "description": "One short sentence: why, in the caller's terms.",
        }
    },
    "required": ["reason"],
    "additionalProperties": False,
}

ESCALATE_TOOL_DEF: dict[str, Any] = {
    "type": "function",
    "name": ESCALATE_TOOL,
    "description": (
        "Hand the caller over to a human colleague. Use it when the caller asks for a person, "
        "is very frustrated, or the request is out of scope. The call is transferred after a "
        "short line; do not say goodbye yourself."
    ),
    "parameters": _REASON_PARAMS,
}

END_CALL_TOOL_DEF: dict[str, Any] = {
    "type": "function",
    "name": END_CALL_TOOL,
    "description": (
        "End the call once the caller has said they are done and you have said goodbye, "
        "or the caller asks to hang up."
    ),
    "parameters": _REASON_PARAMS,
}

ACTION_TOOL_DEFS = (ESCALATE_TOOL_DEF, END_CALL_TOOL_DEF)
ACTION_TOOLS = frozenset({ESCALATE_TOOL, END_CALL_TOOL})


class ActionUnavailable(RuntimeError):
    """The transport cannot do this action (no transfer target, missing credentials…)."""


class CallActions(Protocol):
    """What a transport can do to the call itself."""

    transport: str

    async def transfer(self) -> str:
        """Hand the call to a human; returns the target it was handed to."""
        ...

    async def hang_up(self) -> None: ...


class ActionRecord(BaseModel):
    """A Decision-like record of a call-control action."""

    action_id: str = Field(default_factory=lambda: "act_" + uuid.uuid4().hex[:16])
    call_id: str
    action: ActionName
    tool_call_id: str
    reason: str = ""
    transport: str = ""
    target: str | None = None
    outcome: ActionOutcome = "done"
    error: str | None = None
    line: str = ""
    requested_at: float = Field(default_factory=time.time)
    ms: float = 0.0


def string_argument(arguments: str, name: str) -> str | None:
    """One string argument of a tool call's JSON arguments ("" when absent); None when the
    arguments are not a JSON object or the value is not a string."""
    try:
        parsed = json.loads(arguments) if arguments else {}
    except (ValueError, RecursionError):
        return None
    if not isinstance(parsed, dict):
        return None
    value = parsed.get(name, "")
    return value if isinstance(value, str) else None


def reason_from_arguments(arguments: str) -> str | None:
    """The ``reason`` argument of an action tool, or None when the arguments are invalid."""
    reason = string_argument(arguments, "reason")
    return reason[:300] if reason is not None else None


def line_for(action: ActionName, can_transfer: bool) -> str:
    if action == END_CALL_TOOL:
        return GOODBYE_LINE
    return TRANSFER_LINE if can_transfer else NO_TRANSFER_LINE

