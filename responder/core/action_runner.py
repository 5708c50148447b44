"""Runs a call's ``escalate_to_human`` / ``end_call``: the line first, then the transport's action.

The controller hands the tool call here; the runner builds the :class:`ActionRecord`, tells
the controller what to answer the tool with and which line to say, and, once the line has
been heard (or a bounded wait is over), transfers or hangs up through the transport's
:class:`CallActions`, records the action and ends the call. One action per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Protocol

from structlog.typing import FilteringBoundLogger

from responder.core.actions import (
    END_CALL_TOOL,
    ActionName,
    ActionRecord,
    CallActions,
    line_for,
    reason_from_arguments,
)
from responder.core.engine import Line
from responder.core.recorder import TranscriptRecorder

ACTION_LINE_WAIT_S = 15.0  # an action goes ahead even if its line never finishes playing


class ActionHost(Protocol):
    """The call controller, as the runner needs it."""

    closed: bool

    async def until_silent(self) -> None: ...

    async def close(self) -> None: ...


class ActionRunner:
    def __init__(
        self,
        call_id: str,
        *,
        transport: str,
        actions: CallActions | None,
        recorder: TranscriptRecorder,
        log: FilteringBoundLogger,
        remote_ms_per_char: float | None = None,
    ) -> None:
        self.call_id = call_id
        self.transport = transport
        self.actions = actions
        self.recorder = recorder
        self.log = log
        # sideband calls (SIP, WebRTC): the line plays at the caller's end; estimate how long
        self.remote_ms_per_char = remote_ms_per_char
        self.record: ActionRecord | None = None
        self._started = False
        self._wake = asyncio.Event()  # the line was heard or the call ended: act now
        self._act_by: float | None = None  # loop time the action happens by (perform_later)

    def request(
        self, name: ActionName, tool_call_id: str, arguments: str
    ) -> tuple[str, Line] | None:
        """The tool's answer and the line to say before acting; None: the call ignores it."""
        if self.record is not None:
            self.log.warning("call.tool_call_ignored", tool=name, reason="an action is already under way")
            return None
        reason = reason_from_arguments(arguments)
        if reason is None:
            self.log.warning("call.tool_arguments_invalid", tool=name, arguments=arguments[:200])
        line = line_for(name, self.actions is not None and self.actions.can_transfer)
        self.record = ActionRecord(
            call_id=self.call_id, action=name, tool_call_id=tool_call_id, reason=reason or "",
            transport=self.transport, line=line,
        )  # fmt: skip
        self.log.info("call.action_requested", action=name, reason=reason, action_id=self.record.action_id)
        return json.dumps({"status": "accepted", "say": line}), Line(line)

    def request_by_service(self, reason: str, line: str) -> Line | None:
        """The service itself ends the call (drain): the line to say before hanging up; None
        when an action is already under way (it ends the call anyway)."""
        if self.record is not None:
            return None
        self.record = ActionRecord(
            call_id=self.call_id, action=END_CALL_TOOL, tool_call_id="", reason=reason,
            transport=self.transport, line=line,
        )  # fmt: skip
        action_id = self.record.action_id
        self.log.info("call.action_requested", action=END_CALL_TOOL, reason=reason, action_id=action_id)
        return Line(line)

    async def perform_later(self, host: ActionHost, wait_s: float = ACTION_LINE_WAIT_S) -> None:
        """The action happens even if its line is never spoken (refused, lost) or the call
        ends first (the realtime side failed: a transfer still gets the caller to a person).
        All within ``wait_s`` of the request: however the line's playing is reported (mark
        echoes that may never come), the wait for it ends with this budget, not after it."""
        act_by = asyncio.get_running_loop().time() + wait_s
        self._act_by = act_by if self._act_by is None else min(self._act_by, act_by)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._time_left())
        await self.perform(host)

    def _time_left(self) -> float:
        """What is left of the action's budget for its line to be heard."""
        if self._act_by is None:
            return ACTION_LINE_WAIT_S
        return max(0.0, self._act_by - asyncio.get_running_loop().time())

    def call_closed(self) -> None:
        """The controller closed: a requested action that has not run yet runs now."""
        self._wake.set()

    async def perform(self, host: ActionHost) -> None:
        record = self.record
        if record is None or self._started:
            return
        self._started = True
        self._wake.set()  # the watchdog has nothing left to wait for
        await self._until_line_heard(host, record.line)
        started = time.monotonic()
        transfer = record.action != END_CALL_TOOL and self.actions is not None and self.actions.can_transfer
        try:
            if transfer and self.actions is not None:
                record.target = await self.actions.transfer()
            else:
                if record.action != END_CALL_TOOL:
                    record.outcome = "no_transfer_target"
                if self.actions is not None:
                    await self.actions.hang_up()
        except Exception as exc:
            record.outcome, record.error = "failed", repr(exc)[:300]
            if transfer:
                await self._hang_up_after_failed_transfer(record)
        record.ms = round((time.monotonic() - started) * 1000, 1)
        try:
            await self.recorder.action(record)
        except Exception as exc:  # Redis down: the call still ends; the log keeps the record
            self.log.error(
                "call.action_not_recorded", action_id=record.action_id, action=record.action,
                outcome=record.outcome, error=repr(exc),
            )  # fmt: skip
        await host.close()

    async def _hang_up_after_failed_transfer(self, record: ActionRecord) -> None:
        """The caller was told they are being connected: never leave them with a model nobody
        supervises any more (closing a SIP/WebRTC sideband does not end the call)."""
        if self.actions is None:
            return
        try:
            await self.actions.hang_up()
            record.error = (record.error or "") + "; hung up instead"
        except Exception as exc:
            record.error = ((record.error or "") + "; hang-up failed too: " + repr(exc))[:600]

    async def _until_line_heard(self, host: ActionHost, line: str) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._time_left()):
                if self.remote_ms_per_char is not None:
                    await asyncio.sleep(len(line) * self.remote_ms_per_char / 1000)
                await host.until_silent()
