"""Why a call ended: the ``end_reason`` of its Redis record and of its ``call.ended`` log line.

The first reason given wins (:meth:`responder.core.controller.CallController.close` is idempotent).
"""

from __future__ import annotations

import asyncio
from typing import Final

from responder.core.actions import END_CALL_TOOL, SERVICE_DRAINING

STOP_RECEIVED: Final = "stop_received"  # the caller side said it hung up (Twilio/WebSocket ``stop``)
CALLER_DISCONNECTED: Final = "caller_disconnected"  # its socket dropped without a ``stop``
CALLER_IDLE: Final = "caller_idle"  # its socket sent nothing for RESPONDER_STREAM_IDLE_S: closed
SERVICE_SHUTDOWN: Final = "service_shutdown"  # this instance stopped (or drained) with the call on
REALTIME_FAILED: Final = "realtime_failed"  # the model session failed or closed under the call
SIDEBAND_CLOSED: Final = "sideband_closed"  # SIP/WebRTC: OpenAI closed the call's sideband socket
AGENT_HANGUP: Final = "agent_hangup"  # the responder's end_call tool
ESCALATED: Final = "escalated"  # escalate_to_human (transferred, or hung up after a failed transfer)

END_REASONS: Final = (
    STOP_RECEIVED, CALLER_DISCONNECTED, CALLER_IDLE, SERVICE_SHUTDOWN, REALTIME_FAILED, SIDEBAND_CLOSED,
    AGENT_HANGUP, ESCALATED,
)  # fmt: skip


def unstated_reason(*, sideband: bool, action: str | None, action_reason: str | None = None) -> str:
    """The reason of a call closed without one: by a call-control action (a drain's goodbye is
    one), by a cancellation of a call no request owns (SIP/WebRTC at shutdown), or by its
    model session ending first."""
    if action_reason == SERVICE_DRAINING:
        return SERVICE_SHUTDOWN
    if action is not None:
        return AGENT_HANGUP if action == END_CALL_TOOL else ESCALATED
    task = asyncio.current_task()
    if sideband and task is not None and task.cancelling():
        return SERVICE_SHUTDOWN
    return SIDEBAND_CLOSED if sideband else REALTIME_FAILED


def caller_gone_reason(*, stopping: bool) -> str:
    """The caller's socket ended: cut by this instance's shutdown, or it dropped."""
    return SERVICE_SHUTDOWN if stopping else CALLER_DISCONNECTED
