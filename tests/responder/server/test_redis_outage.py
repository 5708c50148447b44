"""A Redis outage in the middle of a phone call: the call goes on, nothing is lost.

A real redis-server (started by the test, killed with SIGKILL, restarted on the same port),
the real service, the simulated Twilio caller and the simulator. Redis dies right after the
caller's first turn and stays down across the supervisor question; once the answer is
recorded (buffered) it comes back and the call ends. Every item the controller recorded must
then be in Redis, in the order the controller's own log says it was placed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import structlog
from redis.asyncio import Redis
from structlog.testing import capture_logs

from callrecord.history import CallHistory
from callrecord.history_buffer import BufferedCallHistory
from infra.metrics import REGISTRY
from infra.settings import Settings
from responder.trace.from_log import trace_from_log
from simulator.caller import place_call
from simulator.scenario import load_scenario
from tests.support.redis_process import RedisProcess, redis_process  # noqa: F401 (fixture)
from tests.support.service import AUTH_TOKEN, FAST_SPEED, RunningService
from tests.support.waits import wait_until

QUIET_MS = 1500  # wall-clock pause before the caller speaks or hangs up: room for the restart


def gauge() -> float:
    return REGISTRY.get_sample_value("responder_history_buffered_writes") or 0.0


async def test_redis_outage_mid_call_loses_no_item(
    redis_process: RedisProcess,  # noqa: F811  (first: stopped after the service)
    start_service: Callable[..., Any],
    make_settings: Callable[..., Settings],
) -> None:
    scenario = load_scenario("returns").model_copy(update={"quiet_ms": QUIET_MS})
    first_turn, question = scenario.turns[0].say, scenario.turns[1].say
    svc: RunningService = await start_service(
        make_settings(redis_url=redis_process.url, simulator_scenario="returns", simulator_speed=FAST_SPEED)
    )
    history = svc.services.history
    assert isinstance(history, BufferedCallHistory)

    def logged(event: str, **fields: Any) -> list[dict[str, Any]]:
        return [e for e in logs if e["event"] == event and all(e.get(k) == v for k, v in fields.items())]

    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        call = asyncio.create_task(place_call(svc.url, scenario, auth_token=AUTH_TOKEN, speed=svc.speed))
        await wait_until(lambda: logged("call.user_turn", text=first_turn), 30)
        await asyncio.to_thread(redis_process.kill)

        # down across the supervisor question, until its answer has been recorded (buffered)
        await wait_until(lambda: logged("supervisor.decision"), 30)
        answer = logged("supervisor.decision")[0]["text"]
        await wait_until(lambda: logged("call.assistant_turn", text=answer), 30)
        assert history.redis_down and history.pending > 0 and gauge() == history.pending
        await asyncio.to_thread(redis_process.start)

        report = await call
        await wait_until(lambda: history.pending == 0 and not history.redis_down, 20)
    call_id = report.call_sid

    # read Redis itself, through a client of its own
    reader = Redis.from_url(redis_process.url)
    try:
        stored = CallHistory(reader, prefix=svc.services.settings.redis_prefix)
        items = await stored.get_items(call_id)
        decisions = await stored.get_decisions(call_id)
        meta = await stored.get_meta(call_id)
    finally:
        await reader.aclose()

    # the outage really happened mid-call, and was flushed
    [buffered] = logged("history.buffered", call_id=call_id)
    [flushed] = logged("history.flushed")
    assert flushed["count"] >= 5 and flushed["dropped"] == 0 and gauge() == 0
    assert not logged("call.event_handler_failed") and not logged("call.end_not_recorded")
    # the supervisor read the buffered turns (Redis was down): it saw the question
    assert logged("history.read_local", call_id=call_id)
    assert any(question in json.dumps(body) for body in svc.services.simulator.state.text_requests)

    # no item lost, in the order (and with the texts) the controller recorded
    lines = [json.dumps(e, default=str) for e in logs]
    trace = trace_from_log(lines, call_id)
    assert trace is not None
    assert [i.id for i in items] == [e.item_id for e in trace.entries]
    added = {e["item_id"] for e in logged("call.item_added", call_id=call_id)}
    assert added <= {i.id for i in items} and len(added) >= 6
    by_id = {i.id: i for i in items}
    for turn in logged("call.user_turn", call_id=call_id):
        assert by_id[turn["item_id"]].text == turn["text"]
    for entry in trace.entries:
        if entry.kind in ("user", "assistant"):
            assert by_id[entry.item_id].text == entry.text
    convo = [(i.role, i.text) for i in items if i.kind == "message"]
    assert convo[0] == ("assistant", scenario.greeting)
    assert ("user", first_turn) in convo and ("user", question) in convo

    # the decision is recorded, and the caller heard the grounded answer
    [decision] = decisions
    assert decision.outcome == "ok" and "returns@3" in decision.policy_labels()
    assert decision.text == answer and "60 days" in answer
    assert [i.output for i in items if i.kind == "function_call_output"] == [answer]
    assert convo[-1] == ("assistant", answer) and items[-1].status == "completed"
    assert report.audio_ms_played > 0 and not report.hung_up_by_service

    # the call's record is closed, with why
    assert meta["status"] == "ended" and meta["end_reason"] == "stop_received" and float(meta["ended_at"]) > 0
    assert buffered["op"] in ("add_item", "update_item")
