"""Call control the supervisor can ask for: ``escalate_to_human`` and ``end_call``.

On Realtime the speech model has these tools itself (responder/core/actions.py). GPT-Live
under client delegation has no tools: every turn that needs more than talk is delegated to
the supervisor, a request for a person or a goodbye included. So on a delegated turn
(trigger ``delegation`` or ``recovered``) the supervisor is offered the same two tools; a
call to one is not run here but recorded on the :class:`~callrecord.decisions.Decision`
(``action``, ``action_reason``), and the responder says the action's line and then transfers
or hangs up, as it does for the speech model's own tool call.
"""

from __future__ import annotations

import json
from typing import Any, Final

from callrecord.decisions import CallAction, Trigger
from supervisor.tools import Tool, ToolResult, ToolSpec, string_params

ESCALATE: Final = "escalate_to_human"
END_CALL: Final = "end_call"
CALL_CONTROL_TOOLS: Final = frozenset({ESCALATE, END_CALL})
DELEGATED: Final[frozenset[Trigger]] = frozenset({"delegation", "recovered"})

_DESCRIPTIONS: Final = {
    ESCALATE: "Hand the caller over to a human colleague: they ask for a person, are very frustrated, "
    "or need what you cannot give. The responder says the transfer line itself; answer in one short "
    "sentence after calling it.",
    END_CALL: "End the call: the caller has said they are done or says goodbye. The responder says "
    "goodbye itself; answer in one short sentence after calling it.",
}


def offered(trigger: Trigger, name: str) -> bool:
    """Whether a tool is offered for this turn: call control only on delegated turns."""
    return name not in CALL_CONTROL_TOOLS or trigger in DELEGATED


def as_action(name: str) -> CallAction | None:
    return ESCALATE if name == ESCALATE else END_CALL if name == END_CALL else None


def call_control_tools() -> list[Tool]:
    def accepted(name: str) -> Any:
        async def handler(args: dict[str, Any]) -> ToolResult:
            note = f"{name} requested"
            return ToolResult(output=json.dumps({"status": "accepted"}), note=note)

        return handler

    params = string_params(reason="One short sentence: why, in the caller's terms.")
    return [Tool(ToolSpec(name, _DESCRIPTIONS[name], params), accepted(name)) for name in _DESCRIPTIONS]
