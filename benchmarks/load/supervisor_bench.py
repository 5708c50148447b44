"""Supervisor overhead beyond model time, with a long call history (issue 6: ≤ 5 ms p99 at 200 items).

A fresh call with ``items`` history items is seeded in Redis before each run;
:meth:`Supervisor.decide` runs against the simulator's text model (``/v1/responses``),
measuring the wall time of ``decide`` and the time spent inside the model client's
``complete`` (the HTTP round trips to the model); the overhead is their difference: history
read, prompt building, tools, the decision's write to Redis. ``cpu_ms`` is the CPU this
process's thread spent in each ``decide`` (model round trips included: the SDK's request and
reply handling runs on the event loop), which in the service is taken from every call's loop.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from callrecord.history import CallHistory, HistoryItem
from responder.server.warmup import freeze_heap
from simulator.probe import percentiles
from supervisor.agent import build_supervisor

QUESTION = "Can I return a tent I already used on a camping trip?"


def log_like_the_service() -> None:
    """The supervisor's log lines are part of its overhead: JSON at INFO, as ``responder serve``
    logs in production, written to /dev/null instead of a terminal."""
    import os

    import structlog

    from infra.logs import configure_logging

    configure_logging("json", "INFO")
    sink = open(os.devnull, "w")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sink))


async def seed_history(history: CallHistory, call_id: str, items: int) -> None:
    await history.start_call(call_id, transport="loadgen")
    for i in range(items):
        role = "user" if i % 2 == 0 else "assistant"
        text = f"Turn {i}: " + "some words said on the phone " * 3
        await history.add_item(call_id, HistoryItem(id=f"item_{i:04d}", kind="message", role=role, text=text))


async def supervisor_overhead(
    redis_url: str, model_base_url: str, *, items: int = 200, runs: int = 100, prefix: str = "loadgen-sup"
) -> dict[str, Any]:
    redis = Redis.from_url(redis_url)
    history = CallHistory(redis, prefix=prefix, ttl_s=600)
    supervisor = build_supervisor(history, api_key="sk-loadgen", model="gpt-4.1", base_url=model_base_url)
    model_s: list[float] = []
    complete = supervisor.model.complete

    async def timed_complete(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await complete(*args, **kwargs)
        finally:
            model_s.append(time.perf_counter() - t0)

    supervisor.model.complete = timed_complete  # type: ignore[method-assign]
    run_id = f"loadgen-supervisor-{int(time.time())}"
    totals: list[float] = []
    overheads: list[float] = []
    cpu: list[float] = []  # this thread's CPU per decide: the event loop's cost of a decision
    outcomes: dict[str, int] = {}
    seen: list[int] = []
    try:
        for n in range(runs + 1):  # run 0 warms up: connections, caches
            call_id = f"{run_id}-{n}"  # a fresh call each time: exactly ``items`` before deciding
            await seed_history(history, call_id, items)
            seen.append(len(await history.get_items(call_id, limit=10_000)))
            model_s.clear()
            t0, c0 = time.perf_counter(), time.thread_time()
            decision = await supervisor.decide(call_id, QUESTION)
            total, used = time.perf_counter() - t0, time.thread_time() - c0
            if n == 0:
                freeze_heap()  # as `responder serve` does once it has started
                continue
            outcomes[decision.outcome] = outcomes.get(decision.outcome, 0) + 1
            totals.append(total * 1000)
            overheads.append((total - sum(model_s)) * 1000)
            cpu.append(used * 1000)
    finally:
        await supervisor.aclose()
        keys = [k async for k in redis.scan_iter(f"{prefix}:*")]
        for i in range(0, len(keys), 500):
            await redis.delete(*keys[i : i + 500])
        await redis.aclose()
    return {
        "history_items": min(seen) if seen else 0,
        "runs": runs,
        "outcomes": outcomes,
        "total_ms": percentiles(totals),
        "overhead_ms": percentiles(overheads),
        "cpu_ms": percentiles(cpu),
    }


async def _main(items: int, runs: int, profile: bool) -> tuple[dict[str, Any], str]:
    """Standalone: the simulator in its own process, the supervisor here (optionally profiled)."""
    import cProfile
    import io
    import os
    import pstats

    from benchmarks.load.procs import probe_simulator

    async with probe_simulator() as sim:
        profiler = cProfile.Profile() if profile else None
        if profiler is not None:
            profiler.enable()
        redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        result = await supervisor_overhead(redis_url, sim.url + "/v1", items=items, runs=runs)
        out = io.StringIO()
        if profiler is not None:
            profiler.disable()
            stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
            stats.print_stats(r"supervisor/|responder/|redis/asyncio/client|pydantic/main", 40)
    return result, out.getvalue()


if __name__ == "__main__":
    import argparse
    import asyncio
    import json

    parser = argparse.ArgumentParser(description="supervisor overhead beyond model time")
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--profile", type=Path, default=None, help="write cProfile stats (text) here")
    args = parser.parse_args()
    log_like_the_service()
    result, stats = asyncio.run(_main(args.items, args.runs, args.profile is not None))
    if args.profile is not None:
        args.profile.write_text(stats)
    print(json.dumps(result, indent=2))
