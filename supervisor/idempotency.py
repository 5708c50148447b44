"""One decision per request id: a retried ``POST /v1/decide`` is answered, not decided again.

The responder's client (responder/runtime/supervisor_client.py) sends the same ``request_id`` with
every try of one decision. A try can fail on the client's side after the service decided
(a proxy's 502, a reset connection): without this, the retry would run the model again and
record a second decision on the call.

In Redis, ``<prefix>:decide_req:<call_id>:<request_id>``:

* claimed with ``SET NX`` (value ``pending``, expiring shortly after the deadline, so that a
  crashed run does not block the id for long) by the first try, which runs the supervisor;
* then set to the decision's JSON (kept :data:`RESULT_TTL_S`): a later try answers it;
* deleted when the run is cancelled (the client hung up): a later try runs afresh.

A try that finds the id ``pending`` waits for the first one's decision, up to its own
deadline. Redis trouble never blocks a decision: the run goes on without de-duplication.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import structlog
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from callrecord.decisions import Decision

log = structlog.get_logger("supervisor_service")

PENDING = b"pending"
RESULT_TTL_S = 600
PENDING_SLACK_S = 5
POLL_S = 0.05

Claim = Literal["run", "wait"]


class DecideOnce:
    def __init__(self, redis: Redis, prefix: str, *, poll_s: float = POLL_S) -> None:
        self.redis = redis
        self.prefix = prefix
        self.poll_s = poll_s

    def key(self, call_id: str, request_id: str) -> str:
        return f"{self.prefix}:decide_req:{call_id}:{request_id}"

    async def claim(self, key: str, deadline_s: float) -> Claim:
        """``run``: this try decides (or Redis failed: decide anyway); ``wait``: another try is."""
        try:
            claimed = await self.redis.set(key, PENDING, nx=True, ex=int(deadline_s) + PENDING_SLACK_S)
        except RedisError as exc:
            log.warning("supervisor_service.dedupe_unavailable", error=repr(exc))
            return "run"
        return "run" if claimed else "wait"

    async def result(self, key: str, timeout_s: float) -> Decision | Claim | None:
        """The first try's decision once it is there; ``run`` when the id was released (or Redis
        failed) and this try claimed it; None when still pending after ``timeout_s``."""
        loop = asyncio.get_running_loop()
        until = loop.time() + timeout_s
        while True:
            try:
                raw = await self.redis.get(key)
                if raw is None and await self.claim(key, timeout_s) == "run":
                    return "run"
            except RedisError as exc:
                log.warning("supervisor_service.dedupe_unavailable", error=repr(exc))
                return "run"
            if raw is not None and raw != PENDING:
                try:
                    return Decision.model_validate_json(raw)
                except ValidationError:
                    log.warning("supervisor_service.dedupe_unreadable", key=key)
                    return "run"
            if loop.time() >= until:
                return None
            await asyncio.sleep(min(self.poll_s, max(until - loop.time(), 0.0)))

    async def finish(self, key: str, decision: Decision) -> None:
        try:
            await self.redis.set(key, decision.model_dump_json(), ex=RESULT_TTL_S)
        except RedisError as exc:
            log.warning("supervisor_service.dedupe_unavailable", error=repr(exc))

    async def release(self, key: str) -> None:
        try:
            await self.redis.delete(key)
        except RedisError as exc:
            log.warning("supervisor_service.dedupe_unavailable", error=repr(exc))
