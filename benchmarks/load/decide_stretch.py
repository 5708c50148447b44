"""The longest the event loop is held in one go while ``Supervisor.decide`` runs.

Every call on a process waits for the loop: a supervisor step that runs 20 ms without yielding
delays every call's next audio frame by up to 20 ms. A ticker task yields to the loop
continuously while each decision runs; the longest gap between two of its turns is the
longest synchronous stretch of that decision. Each run is a fresh call seeded with ``items``
history items, against the probe simulator's text model in its own process.

    .venv/bin/python -m benchmarks.load.decide_stretch --items 60 --runs 40
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

from redis.asyncio import Redis

from benchmarks.load import supervisor_bench as bench
from benchmarks.load.procs import probe_simulator
from callrecord.history import CallHistory
from simulator.probe import percentiles
from supervisor.agent import build_supervisor


async def longest_stretches(redis_url: str, items: int, runs: int) -> dict[str, Any]:
    async with probe_simulator() as sim:
        redis = Redis.from_url(redis_url)
        history = CallHistory(redis, prefix="loadgen-stretch", ttl_s=600)
        base_url = sim.url + "/v1"
        supervisor = build_supervisor(history, api_key="sk-loadgen", model="gpt-4.1", base_url=base_url)
        gaps: list[float] = []
        timing = False

        async def ticker() -> None:
            last = time.perf_counter()
            while True:
                await asyncio.sleep(0)
                now = time.perf_counter()
                if timing:
                    gaps.append(now - last)
                last = now

        tick = asyncio.create_task(ticker())
        worst: list[float] = []
        try:
            for n in range(runs + 1):  # run 0 warms up
                call_id = f"loadgen-stretch-{int(time.time())}-{n}"
                await bench.seed_history(history, call_id, items)
                gaps.clear()
                timing = True
                await supervisor.decide(call_id, bench.QUESTION)
                timing = False
                if n and gaps:
                    worst.append(max(gaps) * 1000)
        finally:
            tick.cancel()
            await supervisor.aclose()
            keys = [k async for k in redis.scan_iter("loadgen-stretch:*")]
            if keys:
                await redis.delete(*keys)
            await redis.aclose()
    return {"history_items": items, "runs": runs, "longest_stretch_ms": percentiles(worst)}


def main() -> None:
    parser = argparse.ArgumentParser(description="longest event-loop stretch per supervisor decision")
    parser.add_argument("--items", type=int, default=60)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    bench.log_like_the_service()
    try:
        import uvloop

        run: Any = uvloop.run
    except ImportError:  # pragma: no cover
        run = asyncio.run
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    print(json.dumps(run(longest_stretches(redis_url, args.items, args.runs)), indent=2))


if __name__ == "__main__":
    main()
