"""Call-side code paths that read the history while Redis is down and nothing of the call is
buffered (reads then raise :class:`HistoryUnavailable`): the call must go on regardless.

Real redis-server (killed by the test), real :class:`BufferedCallHistory`; the engine is the
in-memory double (tests/support/engine.py), which records the controller's commands."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest
from redis.asyncio import Redis
from structlog.testing import capture_logs

from callrecord.decisions import Decision
from callrecord.history_buffer import BufferedCallHistory, HistoryUnavailable
from infra.redis_server import client_options
from infra.settings import Settings
from responder.core.controller import CallController, ControllerConfig
from responder.core.end_reason import CALLER_DISCONNECTED
from responder.core.handover import ask_supervisor
from responder.transports.stream import StreamCall
from tests.support.caller import RecordingCaller
from tests.support.engine import ScriptedEngine
from tests.support.history import drained
from tests.support.redis_process import RedisProcess, redis_process  # noqa: F401 (fixture)

CALL = "CAcallfaults"


@pytest.fixture
async def history(redis_process: RedisProcess) -> AsyncIterator[BufferedCallHistory]:  # noqa: F811
    client = Redis.from_url(redis_process.url, **client_options())
    buffered = BufferedCallHistory(client, prefix="callfaults", ttl_s=600)
    try:
        yield buffered
    finally:
        await buffered.aclose(timeout_s=0.2)
        await client.aclose()


async def test_supervisor_answer_is_delivered_when_the_turn_cannot_be_read(
    redis_process: RedisProcess,  # noqa: F811
    history: BufferedCallHistory,
) -> None:
    """Empty tool arguments make the controller read the caller's turn for a context; Redis is
    down and the call has nothing buffered: the supervisor is asked anyway and its answer sent."""
    asked: list[str] = []

    async def decide(call_id: str, context: str, *, user_item_id: str | None = None, **_: object) -> Decision:
        asked.append(context)
        return Decision(call_id=call_id, user_item_id=user_item_id, context=context, text="Within 60 days.")

    engine = ScriptedEngine()
    config = ControllerConfig(transcript_wait_s=0.05, hold_delay_s=30.0)
    controller = CallController(CALL, engine, RecordingCaller(), history, decide, config)
    redis_process.kill()
    with pytest.raises(HistoryUnavailable):  # the read the controller falls back on fails
        await history.get_item(CALL, "u1")
    with capture_logs() as logs:
        await ask_supervisor(controller, "tool_1", "", "u1")
    assert asked == [""]
    assert engine.sent("answer") == [("tool_1", "Within 60 days.")]
    assert any(e["event"] == "call.context_unavailable" for e in logs)
    await controller.close()


class _Stream(StreamCall):
    transport = "faulttest"


async def test_caller_gone_before_the_session_closes_the_record_while_redis_is_down(
    redis_process: RedisProcess,  # noqa: F811
    history: BufferedCallHistory,
) -> None:
    """The caller left before the model session was up; Redis died after the call's start was
    written, so the record cannot be read: its end is still written (buffered, then flushed)."""
    await history.start_call(CALL, transport="faulttest")
    services = SimpleNamespace(history=history, stopping=False, settings=Settings())
    call = _Stream(None, services)  # type: ignore[arg-type]  # _finish uses no socket
    call.call_id = CALL
    call._run_task = asyncio.create_task(asyncio.sleep(60))  # the session still being opened
    redis_process.kill()
    with capture_logs() as logs:
        await call._finish()  # must not raise
    assert call._run_task.cancelled()
    assert any(e["event"] == "call.record_unreadable" for e in logs)
    assert history.pending == 1
    await asyncio.to_thread(redis_process.start)
    await drained(history, 20)
    meta = await history.get_meta(CALL)
    assert (meta["status"], meta["end_reason"]) == ("ended", CALLER_DISCONNECTED)
