"""Failed admin-token attempts, counted per client and in all over a sliding window in Redis.

Every wrong token (the sign-in form or an ``Authorization: Bearer`` header of the trace
viewer) is one entry, stamped with its time, in two sorted sets: the client's
(``{prefix}:admin:login_failures:<digest of its address>``) and everyone's
(``{prefix}:admin:login_failures``). Before a token is even compared, both are trimmed to
the window and counted; at ``per_client`` (or ``total``) failures within the window the
attempt is refused — the right token too, or the count would only slow guessing — until the
oldest failure that keeps the count at the limit leaves the window (``Retry-After``). The
counts live in Redis, so every instance applies the same ones; refused attempts are not
counted, so a flood cannot grow the sets. A valid sign-in session is not a token attempt and
is never throttled: an operator already signed in is not locked out by someone guessing.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from dataclasses import dataclass
from typing import Literal

from redis.asyncio import Redis

Limit = Literal["per_client", "total"]


@dataclass(frozen=True)
class Throttled:
    limit: Limit
    retry_after_s: int


class LoginThrottle:
    def __init__(self, per_client: int, total: int, window_s: float) -> None:
        self.per_client, self.total, self.window_s = per_client, total, window_s

    def _keys(self, prefix: str, client: str) -> list[tuple[str, int, Limit]]:
        digest = hashlib.sha256(client.encode("utf-8", "surrogateescape")).hexdigest()[:32]
        everyone = f"{prefix}:admin:login_failures"
        return [(f"{everyone}:{digest}", self.per_client, "per_client"), (everyone, self.total, "total")]

    async def check(self, redis: Redis, prefix: str, client: str) -> Throttled | None:
        """None when ``client`` may try a token now; else which limit holds it, and how long."""
        now = time.time()
        keys = self._keys(prefix, client)
        pipe = redis.pipeline(transaction=False)
        for key, limit, _ in keys:
            pipe.zremrangebyscore(key, "-inf", now - self.window_s)
            pipe.zcard(key)
            pipe.zrange(key, -limit, -limit, withscores=True)
        results = await pipe.execute()
        for i, (_, limit, name) in enumerate(keys):
            count, at_limit = results[3 * i + 1], results[3 * i + 2]
            if count >= limit and at_limit:
                wait = at_limit[0][1] + self.window_s - now
                return Throttled(name, max(1, math.ceil(wait)))
        return None

    async def failed(self, redis: Redis, prefix: str, client: str) -> None:
        now = time.time()
        member = f"{now:.6f}:{secrets.token_hex(4)}"
        pipe = redis.pipeline(transaction=False)
        for key, _, _ in self._keys(prefix, client):
            pipe.zadd(key, {member: now})
            pipe.pexpire(key, math.ceil(self.window_s * 1000) + 1000)
        await pipe.execute()
