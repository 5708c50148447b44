"""``responder trace CALL_ID [--log FILE] [--json]``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from callrecord.history import CallHistory
from infra.redis_server import connect_redis
from infra.settings import Settings
from responder.trace.from_log import trace_from_log
from responder.trace.from_redis import trace_from_redis
from responder.trace.model import Trace, valid_call_id
from responder.trace.render import render_text


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    trace = sub.add_parser("trace", help="why the agent said what it said: one call's timeline")
    trace.add_argument("call_id")
    trace.add_argument("--log", help="rebuild from this JSON log file instead of Redis")
    trace.add_argument("--json", action="store_true", help="print the trace as JSON")


async def run(settings: Settings, args: argparse.Namespace) -> int:
    if not valid_call_id(args.call_id):
        print(f"invalid call id: {args.call_id!r}", file=sys.stderr)
        return 2
    trace: Trace | None
    if args.log:
        text = await asyncio.to_thread(Path(args.log).read_text, encoding="utf-8")
        trace = trace_from_log(text.splitlines(), args.call_id)
    else:
        redis = await connect_redis(settings.redis_url, settings.redis_data_dir)
        try:
            history = CallHistory(redis.client, prefix=settings.redis_prefix, ttl_s=settings.history_ttl_s)
            trace = await trace_from_redis(history, args.call_id)
        finally:
            await redis.close()
    if trace is None:
        print(f"no trace of call {args.call_id}", file=sys.stderr)
        return 1
    print(json.dumps(trace.as_json(), indent=2) if args.json else render_text(trace))
    return 0
