"""The responder's hand-over tool: how the speech model asks the supervisor.

On Realtime the hand-over is this function tool (the name the prompt in
``responder/instructions/responder.md`` uses); the call-control tools are in
:mod:`responder.core.actions`.
"""

from __future__ import annotations

from typing import Any, Final

SUPERVISOR_TOOL: Final = "getNextResponseFromSupervisor"
CONTEXT_ARG: Final = "relevantContextFromLastUserMessage"

SUPERVISOR_TOOL_DEF: dict[str, Any] = {
    "type": "function",
    "name": SUPERVISOR_TOOL,
    "description": (
        "Ask the supervisor, an expert with the company's policy documents and account and "
        "store tools, what to say next. Use it for every factual question, policy, account, "
        "order or store request. Its answer is text for you to rephrase for speech."
    ),
    "parameters": {
        "type": "object",
        "properties": {
            CONTEXT_ARG: {
                "type": "string",
                "description": (
                    "The key facts and the request from the caller's latest message, with any "
                    "details they gave (numbers, names, dates). Short; don't answer it yourself."
                ),
            }
        },
        "required": [CONTEXT_ARG],
        "additionalProperties": False,
    },
}
