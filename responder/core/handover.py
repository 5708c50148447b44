"""A hand-over to the supervisor: wait for the caller's words, ask, hold the line, answer.

The engine hands the turn over (Realtime: the ``getNextResponseFromSupervisor`` tool call).
This module runs one such turn as a task while audio keeps flowing: it waits a bounded time
(``transcript_wait_s``) for the caller's transcript so that the supervisor reads the latest
turn, asks the supervisor within its deadline, has one hold line said if the answer is slow
(``hold_delay_s``), and hands the answer (or the fallback) back to the controller, which
speaks it when no reply can collide with it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from redis.exceptions import RedisError
from structlog.typing import FilteringBoundLogger

from callrecord.decisions import CallAction, Trigger
from callrecord.history import CallHistory
from infra import metrics
from responder.core.contract import ControllerConfig, DecideFn
from responder.core.recorder import TranscriptRecorder
from supervisor.agent import FALLBACK_TEXT
from supervisor.observe import observe_decision

DEADLINE_GRACE_S = 2.0  # the supervisor keeps its own deadline; this is the last net


class HandoverHost(Protocol):
    """The call controller, as a hand-over needs it."""

    call_id: str
    closed: bool
    config: ControllerConfig
    history: CallHistory
    recorder: TranscriptRecorder
    decide: DecideFn
    log: FilteringBoundLogger
    outcomes: list[str]

    async def until_quiet(self) -> None: ...

    async def say_hold_line(self) -> None: ...

    async def deliver_answer(self, handover_id: str, text: str) -> None: ...

    async def request_action(self, name: CallAction, handover_id: str, reason: str) -> None: ...


async def ask_supervisor(
    host: HandoverHost, handover_id: str, context: str, user_item: str | None, trigger: Trigger = "tool_call"
) -> None:
    """Run one supervisor turn to its end; its decision is recorded even if the call ended."""
    if user_item is not None:
        try:
            ready = host.recorder.transcript_ready(user_item)
            await asyncio.wait_for(ready.wait(), host.config.transcript_wait_s)
        except TimeoutError:
            host.log.info("call.transcript_wait_expired", item_id=user_item)
        await host.recorder.flush(host.config.transcript_wait_s)  # the supervisor reads it all
        if not context:  # invalid or empty arguments: fall back on what the caller said
            context = await _caller_words(host, user_item)
    hold = asyncio.ensure_future(_hold_lines(host))
    started = time.monotonic()
    try:
        async with asyncio.timeout(host.config.supervisor_deadline_s + DEADLINE_GRACE_S):
            decision = await host.decide(host.call_id, context, user_item_id=user_item, trigger=trigger)
        text, outcome = decision.text, decision.outcome
        decision_action, action_reason = decision.action, decision.action_reason
        observe_decision(decision)
        host.recorder.anchor_output(handover_id, decision.decision_id)
    except Exception as exc:  # the supervisor records its own failures; this is the last net
        text, outcome, decision_action, action_reason = FALLBACK_TEXT, "error", None, ""
        host.log.error("call.supervisor_failed", error=repr(exc))
    finally:
        hold.cancel()
    ms = round((time.monotonic() - started) * 1000, 1)
    host.log.info("call.supervisor_answer", tool_call_id=handover_id, outcome=outcome, ms=ms)
    host.outcomes.append(outcome)
    if outcome != "ok":
        host.log.warning("call.fallback", tool_call_id=handover_id, outcome=outcome)
        metrics.FALLBACKS.labels(outcome=outcome).inc()
    if decision_action is not None and outcome == "ok":  # the supervisor asked for a transfer / hang-up
        if host.closed:
            host.log.info("call.late_result_dropped", tool_call_id=handover_id, reason="call ended")
            return
        host.log.info("call.supervisor_action", tool_call_id=handover_id, action=decision_action)
        await host.request_action(decision_action, handover_id, action_reason)
        return
    try:
        await host.deliver_answer(handover_id, text)
    except Exception as exc:  # sent into a socket that just dropped: a resume gives it again
        host.log.warning("call.answer_not_sent", tool_call_id=handover_id, error=repr(exc)[:200])


async def _caller_words(host: HandoverHost, user_item: str) -> str:
    try:
        item = await host.history.get_item(host.call_id, user_item)
    except RedisError as exc:  # the hand-over must still get its answer
        host.log.warning("call.context_unavailable", item_id=user_item, error=repr(exc))
        return ""
    return (item.text or "") if item else ""


async def _hold_lines(host: HandoverHost) -> None:
    """Say a short hold line if the supervisor is slow; never over the caller or a reply."""
    for _ in range(host.config.max_hold_lines):
        await asyncio.sleep(host.config.hold_delay_s)
        await host.until_quiet()
        if host.closed:
            return
        metrics.HOLD_LINES.inc()
        await host.say_hold_line()
