"""Prometheus metrics move as a simulated call proceeds; /healthz and /readyz."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from infra import metrics
from infra.settings import Settings
from simulator.caller import place_call
from simulator.scenario import load_scenario
from tests.support.calls import QUIET_MS, run_call
from tests.support.serve_process import start_ready_serve
from tests.support.service import AUTH_TOKEN, FAST_SPEED
from tests.support.waits import wait_until


def value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def test_metrics_follow_a_grounded_call(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc = await start_service(make_settings(simulator_scenario="returns", simulator_speed=FAST_SPEED))
    active = value("responder_active_calls", transport="twilio")
    calls_ok = value("responder_calls_total", transport="twilio", outcome="ok")
    decided = value("responder_supervisor_latency_seconds_count", outcome="ok")
    lookups = value("responder_supervisor_tool_latency_seconds_count", tool="lookupPolicyDocument")
    responses = value("responder_response_latency_seconds_count")
    tokens_in = value("responder_tokens_total", model="gpt-4.1", kind="input")

    scenario = load_scenario("returns").model_copy(update={"quiet_ms": QUIET_MS})
    call = asyncio.create_task(place_call(svc.url, scenario, auth_token=AUTH_TOKEN, speed=svc.speed))
    # during the call: one more active call, none finished yet
    await wait_until(lambda: value("responder_active_calls", transport="twilio") == active + 1, 10, 0.02)
    assert value("responder_calls_total", transport="twilio", outcome="ok") == calls_ok
    await call
    # after it: back to where it was, one more call counted, one decision, one policy lookup
    await wait_until(lambda: value("responder_active_calls", transport="twilio") == active, 10, 0.02)
    assert value("responder_calls_total", transport="twilio", outcome="ok") == calls_ok + 1
    assert value("responder_supervisor_latency_seconds_count", outcome="ok") == decided + 1
    assert (
        value("responder_supervisor_tool_latency_seconds_count", tool="lookupPolicyDocument") >= lookups + 1
    )
    # the caller spoke twice; each turn got audio back
    assert value("responder_response_latency_seconds_count") >= responses + 2
    assert value("responder_tokens_total", model="gpt-4.1", kind="input") > tokens_in

    async with aiohttp.ClientSession() as http, http.get(svc.url + "/metrics") as resp:
        assert resp.status == 200 and resp.content_type == "text/plain"
        body = await resp.text()
    assert 'responder_calls_total{outcome="ok",transport="twilio"}' in body
    assert "responder_supervisor_latency_seconds_bucket" in body


async def test_fallback_and_hold_line_are_counted(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    fallbacks = value("responder_fallbacks_total", outcome="timeout")
    timeouts = value("responder_supervisor_latency_seconds_count", outcome="timeout")
    holds = value("responder_hold_lines_total")
    calls_timeout = value("responder_calls_total", transport="twilio", outcome="timeout")
    settings = make_settings(
        simulator_scenario="supervisor_timeout", supervisor_deadline_s=1.0, hold_delay_s=0.5
    )
    scenario = load_scenario("supervisor_timeout").model_copy(update={"quiet_ms": 1800})
    await run_call(start_service, settings, scenario)
    assert value("responder_fallbacks_total", outcome="timeout") == fallbacks + 1
    assert value("responder_supervisor_latency_seconds_count", outcome="timeout") == timeouts + 1
    assert value("responder_hold_lines_total") == holds + 1
    await wait_until(
        lambda: value("responder_calls_total", transport="twilio", outcome="timeout") == calls_timeout + 1,
        10, 0.02,
    )  # fmt: skip


async def test_health_and_readiness(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc = await start_service(make_settings())
    async with aiohttp.ClientSession() as http:
        async with http.get(svc.url + "/healthz") as resp:
            assert resp.status == 200
        async with http.get(svc.url + "/readyz") as resp:
            ready = await resp.json()
            assert resp.status == 200 and ready["ready"] is True
            assert ready["simulator"] is True and ready["policies"] >= 1
        svc.services.draining = True
        async with http.get(svc.url + "/readyz") as resp:
            assert resp.status == 503 and (await resp.json())["reason"] == "draining"
        async with http.get(svc.url + "/healthz") as resp:
            assert resp.status == 200  # draining is not dead


def _console_logs(logs: Path) -> str:
    return "".join(p.read_text(encoding="utf-8") for p in sorted(logs.glob("serve-*.stderr")))


async def test_sigterm_drains_then_exits(redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    """``responder serve``: on SIGTERM /readyz turns 503 at once, the call in progress goes on to
    its end, then the process exits cleanly."""
    def env(url: str) -> dict[str, str]:
        return {
            "REDIS_URL": redis_url, "RESPONDER_REDIS_PREFIX": key_prefix,
            "RESPONDER_REDIS_DATA_DIR": str(tmp_path / "redis"), "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "RESPONDER_PUBLIC_URL": url, "RESPONDER_SIMULATOR_SPEED": str(FAST_SPEED),
            "RESPONDER_DRAIN_S": "30", "RESPONDER_LOG_FORMAT": "json",
        }  # fmt: skip

    async with aiohttp.ClientSession() as http:
        proc, url = await start_ready_serve(http, env, tmp_path)
    try:
        async with aiohttp.ClientSession() as http:

            async def ready() -> tuple[int, dict[str, Any]]:
                async with http.get(url + "/readyz") as resp:
                    return resp.status, await resp.json()

            scenario = load_scenario("returns").model_copy(update={"quiet_ms": QUIET_MS})
            placed = place_call(url, scenario, auth_token=AUTH_TOKEN, speed=FAST_SPEED)
            call = asyncio.create_task(placed)
            await asyncio.sleep(1.0)  # the call is under way
            assert not call.done()
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            status, body = await ready()
            assert (status, body["reason"]) == (503, "draining")
            report = await call  # served to its end, not cut off
            assert report.call_sid
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    log = _console_logs(tmp_path)
    assert '"app.draining"' in log and '"app.drained"' in log
