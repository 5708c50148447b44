"""How a phone call ends is recorded: a dropped media connection is not a hang-up.

The simulated Twilio caller either hangs up (``stop``, then closes the socket) or loses its
connection after the first answer (the TCP connection ends with neither ``stop`` nor a
WebSocket close frame). Either way the call's Redis record is closed, with a different
``end_reason``; the same holds when the cut comes while Redis itself is down, and when the
service shuts down under a live call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from structlog.testing import capture_logs

from callrecord.history import CallHistory
from callrecord.history_buffer import BufferedCallHistory
from infra.settings import Settings
from responder.core.end_reason import CALLER_DISCONNECTED, SERVICE_SHUTDOWN, STOP_RECEIVED
from simulator.caller import place_call
from simulator.scenario import load_scenario
from tests.support.calls import wait_for_status
from tests.support.history import drained
from tests.support.redis_process import RedisProcess, redis_process  # noqa: F401 (fixture)
from tests.support.service import AUTH_TOKEN, FAST_SPEED, RunningService
from tests.support.waits import wait_until


def logged(logs: list[dict[str, Any]], event: str) -> bool:
    return any(e["event"] == event for e in logs)


@pytest.mark.parametrize(("cut_after_turn", "reason"), [(1, CALLER_DISCONNECTED), (None, STOP_RECEIVED)])
async def test_end_reason_of_a_cut_connection_and_of_a_hang_up(
    redis_process: RedisProcess,  # noqa: F811  (first: stopped after the service)
    start_service: Callable[..., Any],
    make_settings: Callable[..., Settings],
    cut_after_turn: int | None,
    reason: str,
) -> None:
    scenario = load_scenario("returns").model_copy(update={"quiet_ms": 900})
    svc: RunningService = await start_service(
        make_settings(redis_url=redis_process.url, simulator_scenario="returns", simulator_speed=FAST_SPEED)
    )
    with capture_logs() as logs:
        report = await place_call(
            svc.url, scenario, auth_token=AUTH_TOKEN, speed=svc.speed, cut_after_turn=cut_after_turn
        )
        meta = await wait_for_status(svc, report.call_sid, {"ended"}, 10)
        await wait_until(lambda: logged(logs, "call.ended"), 5, 0.02)  # right after the record is closed
    assert meta["end_reason"] == reason and float(meta["ended_at"]) >= float(meta["started_at"])
    [ended] = [e for e in logs if e["event"] == "call.ended"]
    assert ended["end_reason"] == reason and ended["call_id"] == report.call_sid
    stopped = [e for e in logs if e["event"] == "twilio.stream_stopped"]
    items = await svc.services.history.get_items(report.call_sid)
    said = [i.text for i in items if i.kind == "message" and i.role == "user"]
    if cut_after_turn is None:
        assert len(stopped) == 1 and said == [t.say for t in scenario.turns]
    else:  # cut mid-call: after the first answer, before the factual question
        assert not stopped and said == [scenario.turns[0].say]
        assert any(e["event"] == "simulator.caller.connection_cut" for e in logs)
        assert not await svc.services.history.get_decisions(report.call_sid)


async def test_cut_while_redis_is_down_is_recorded_once_it_is_back(
    redis_process: RedisProcess,  # noqa: F811  (first: stopped after the service)
    start_service: Callable[..., Any],
    make_settings: Callable[..., Settings],
) -> None:
    scenario = load_scenario("returns").model_copy(update={"quiet_ms": 900})
    svc: RunningService = await start_service(
        make_settings(redis_url=redis_process.url, simulator_scenario="returns", simulator_speed=FAST_SPEED)
    )
    history = svc.services.history
    assert isinstance(history, BufferedCallHistory)
    with capture_logs() as logs:
        call = asyncio.create_task(
            place_call(svc.url, scenario, auth_token=AUTH_TOKEN, speed=svc.speed, cut_after_turn=1)
        )
        await wait_until(lambda: logged(logs, "call.user_turn"), 30)
        await asyncio.to_thread(redis_process.kill)
        report = await call
        await wait_until(lambda: logged(logs, "call.ended"), 10, 0.02)
        # the end is known locally while Redis is down …
        assert history.redis_down
        assert (await history.get_meta(report.call_sid))["end_reason"] == CALLER_DISCONNECTED
        await asyncio.to_thread(redis_process.start)
        await drained(history, 20)
    # … and in Redis once it is back
    meta = await history.get_meta(report.call_sid)
    assert (meta["status"], meta["end_reason"]) == ("ended", CALLER_DISCONNECTED)


async def test_shutdown_mid_call_records_service_shutdown(
    redis_process: RedisProcess,  # noqa: F811  (first: stopped after the service)
    start_service: Callable[..., Any],
    make_settings: Callable[..., Settings],
) -> None:
    scenario = load_scenario("returns").model_copy(update={"quiet_ms": 900})
    settings = make_settings(
        redis_url=redis_process.url, simulator_scenario="returns", simulator_speed=FAST_SPEED
    )
    svc: RunningService = await start_service(settings)
    with capture_logs() as logs:
        call = asyncio.create_task(place_call(svc.url, scenario, auth_token=AUTH_TOKEN, speed=svc.speed))
        await wait_until(lambda: logged(logs, "call.user_turn"), 30)
        assert svc.server.runner is not None
        svc.server.runner._shutdown_timeout = 1.0  # handlers are cancelled after 1 s, not 10+
        await svc.server.close()  # the instance stops with the call on
        report = await call
    [ended] = [e for e in logs if e["event"] == "call.ended"]
    assert ended["end_reason"] == SERVICE_SHUTDOWN
    reader = Redis.from_url(redis_process.url)
    try:
        meta = await CallHistory(reader, prefix=settings.redis_prefix).get_meta(report.call_sid)
    finally:
        await reader.aclose()
    assert (meta["status"], meta["end_reason"]) == ("ended", SERVICE_SHUTDOWN)
