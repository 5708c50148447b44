"""Call admission: a cap on concurrent calls per instance and a per-client rate limit.

Every transport asks before it starts a call. A refusal names its reason so that each
transport can refuse in its own terms (HTTP 429 with ``Retry-After``, SIP reject with
"busy", a polite TwiML message). The rate limit is a token bucket per client key (the
browser's address), kept in process: it protects this instance's call creation, which is
what costs money upstream.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from infra.metrics import CALLS_REFUSED

RefusalReason = Literal["capacity", "rate_limited"]
_BUCKETS_MAX = 10_000  # bound memory when many clients come and go


class AdmissionRefused(Exception):
    def __init__(self, reason: RefusalReason, retry_after_s: float) -> None:
        super().__init__(reason)
        self.reason: RefusalReason = reason
        self.retry_after_s = retry_after_s


@dataclass
class _Bucket:
    tokens: float
    updated: float


class Ticket:
    """One admitted call; releasing it (once) frees its slot."""

    def __init__(self, admission: CallAdmission, transport: str) -> None:
        self._admission = admission
        self.transport = transport
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._admission._release(self)


class CallAdmission:
    def __init__(
        self,
        max_calls: int,
        rate_per_minute: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_calls = max_calls
        self.rate_per_s = rate_per_minute / 60.0
        self.burst = max(1, burst)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self.active: dict[str, int] = {}  # transport → live calls

    @property
    def active_total(self) -> int:
        return sum(self.active.values())

    def has_room(self) -> bool:
        return self.active_total < self.max_calls

    def admit(
        self, transport: str, client_key: str | None = None, *, promised: bool = False, draining: bool = False
    ) -> Ticket:
        """A ticket for a new call, or :class:`AdmissionRefused`. ``client_key`` None: no rate
        limit. ``promised``: the call was admitted earlier (a Twilio webhook answered with a
        stream), so it is counted even if the instance filled up in between. ``draining``: the
        instance is shutting down and takes no new calls (refused like a full instance)."""
        try:
            if not promised and (draining or not self.has_room()):
                raise AdmissionRefused("capacity", retry_after_s=5.0)
            if client_key is not None:
                self._take_token(client_key)
        except AdmissionRefused as refused:
            reason = "draining" if draining and refused.reason == "capacity" else refused.reason
            CALLS_REFUSED.labels(transport=transport, reason=reason).inc()
            raise
        self.active[transport] = self.active.get(transport, 0) + 1
        return Ticket(self, transport)

    def _take_token(self, key: str) -> None:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= _BUCKETS_MAX:
                self._forget_full_buckets(now)
            bucket = self._buckets[key] = _Bucket(tokens=float(self.burst), updated=now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate_per_s)
        bucket.updated = now
        if bucket.tokens < 1.0:
            wait = (1.0 - bucket.tokens) / self.rate_per_s if self.rate_per_s > 0 else 60.0
            raise AdmissionRefused("rate_limited", retry_after_s=math.ceil(wait))
        bucket.tokens -= 1.0

    def _forget_full_buckets(self, now: float) -> None:
        for key, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.updated) * self.rate_per_s >= self.burst:
                del self._buckets[key]
        if len(self._buckets) >= _BUCKETS_MAX:
            self._buckets.clear()

    def _release(self, ticket: Ticket) -> None:
        left = self.active.get(ticket.transport, 0) - 1
        self.active[ticket.transport] = max(0, left)
