"""CPU the event loop's thread spends on the per-turn work beside the relay: history writes and
log lines (issue 15: at 40 calls they were a fifth of the service's busy samples with the
supervisor's model calls).

* ``add_item`` / ``update_item`` of :class:`callrecord.history.CallHistory` against a real
  Redis (``REDIS_URL``, else 127.0.0.1:6379), one after another, CPU of the loop's thread;
* one production log line (JSON, redaction on, the queued writer) of the two commonest events
  at 40 calls, ``call.item_added`` and ``call.user_turn``.

    .venv/bin/python -m benchmarks.loop_costs [--items 500] [--lines 2000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid

import structlog
import uvloop
from redis.asyncio import Redis

from callrecord.history import CallHistory, HistoryItem
from infra.logs import configure_logging, flush_logs


async def history_costs(url: str, n: int) -> tuple[float, float]:
    """µs of loop-thread CPU per add_item and per update_item."""
    redis = Redis.from_url(url)
    history = CallHistory(redis, prefix="loopcost-" + uuid.uuid4().hex[:8])
    call = "CA" + uuid.uuid4().hex
    try:
        started = time.thread_time()
        for i in range(n):
            item = HistoryItem(id=f"item_{i}", kind="message", role="user", status="in_progress")
            await history.add_item(call, item)
        added = time.thread_time() - started
        started = time.thread_time()
        for i in range(n):
            await history.update_item(call, f"item_{i}", text="Can I return a used tent?", status="completed")
        updated = time.thread_time() - started
    finally:
        await redis.delete(*history._keys(call))
        await redis.aclose()
    return added / n * 1e6, updated / n * 1e6


def log_cost(n: int) -> float:
    """µs of the calling thread per production log line (the writer thread not counted)."""
    stderr, sys.stderr = sys.stderr, open(os.devnull, "w")  # the lines go nowhere
    configure_logging("json", "INFO", secrets=["sk-loopcost-not-a-real-key"])
    log = structlog.get_logger("call").bind(call_id="CA" + "0" * 32)

    def two() -> None:
        log.info(
            "call.item_added", item_id="item_6207c0f5cdf07f58e0cb", kind="message", role="assistant",
            status="in_progress", where="append", previous_item_id="item_4c7e50c3562605da1a3b", text=None,
        )  # fmt: skip
        log.info("call.user_turn", item_id="item_4c7e50c3562605da1a3b", text="Can I return a used tent?")

    for _ in range(100):
        two()
    best = float("inf")
    for _ in range(3):
        started = time.thread_time()
        for _ in range(n // 2):
            two()
        best = min(best, time.thread_time() - started)
    flush_logs()
    sys.stderr = stderr
    return best / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--lines", type=int, default=2000)
    args = parser.parse_args()
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    added, updated = uvloop.run(history_costs(url, args.items))
    print(f"history add_item     {added:7.1f} µs loop CPU")
    print(f"history update_item  {updated:7.1f} µs loop CPU")
    print(f"log line             {log_cost(args.lines):7.1f} µs loop CPU")


if __name__ == "__main__":
    main()
