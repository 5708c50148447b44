"""Retrying 429, 5xx and connection errors: exponential backoff with jitter, inside a deadline.

Used on both sides of the supervisor: the responder's HTTP client of the supervisor service
(responder/runtime/supervisor_client.py) and the supervisor's text-model client (supervisor/model.py).

* The wait before retry ``n`` (1-based) is "equal jitter" backoff: half of
  ``min(max_s, base_s * 2 ** (n - 1))`` plus a uniform random share of the other half, so
  that callers failing together do not retry together.
* A server's ``Retry-After`` (seconds or an HTTP date; OpenAI also sends ``retry-after-ms``)
  is a floor: we never come back sooner than it asks, and a jittered share of the backoff
  is added on top, so that clients told the same time do not all return at once. A wait
  over ``max_retry_after_s`` is not waited at all (no retry), deadline or not.
* Nothing is retried once ``attempts`` are used up, or when the wait plus ``min_attempt_s``
  (time worth giving one more try) no longer fits in what is left of the deadline: then the
  caller falls back at once instead of sleeping into its deadline.

The supervisor's deadline reaches the model client through :func:`deadline_scope` (a context
variable holding the event loop time it ends at), so no signature has to carry it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

_DEADLINE: ContextVar[float | None] = ContextVar("supervisor_retry_deadline", default=None)


@contextmanager
def deadline_scope(when: float | None) -> Iterator[None]:
    """Within this block, :func:`remaining_s` counts down to loop time ``when``."""
    token = _DEADLINE.set(when)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def remaining_s() -> float | None:
    """Seconds left until the current deadline; None when no deadline is set."""
    when = _DEADLINE.get()
    if when is None:
        return None
    return when - asyncio.get_running_loop().time()


def retryable_status(status: int | None) -> bool:
    """429 and 5xx are worth another try; other 4xx will fail the same way again."""
    return status is not None and (status == 429 or 500 <= status <= 599)


def retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """The wait a server asked for: ``retry-after-ms``, else ``Retry-After`` (seconds or date)."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000
        except ValueError:
            value = -1.0
        if 0 <= value < 3600:
            return value
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        value = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        value = (when - datetime.now(UTC)).total_seconds()
        value = max(value, 0.0)
    if value != value or value < 0 or value >= 3600:  # NaN, negative, absurd: ignore
        return None
    return value


@dataclass(frozen=True)
class Backoff:
    attempts: int = 4  # tries in all, the first included
    base_s: float = 0.2
    max_s: float = 2.0
    min_attempt_s: float = 0.25  # do not start a try with less time than this left
    max_retry_after_s: float = 10.0  # a server asking for a longer wait: give up instead

    def delay(self, retry: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """The wait before retry number ``retry`` (1 = the first retry)."""
        cap = min(self.max_s, self.base_s * 2 ** max(retry - 1, 0))
        share = (rng or random).uniform(0, cap / 2)
        if retry_after is not None and retry_after > cap / 2 + share:
            return retry_after + share  # the server's floor, spread out
        return cap / 2 + share

    def next_delay(self, attempt: int, retry_after: float | None, remaining: float | None) -> float | None:
        """After failed try ``attempt`` (1-based): the wait before the next, or None to stop."""
        if attempt >= self.attempts:
            return None
        if retry_after is not None and retry_after > self.max_retry_after_s:
            return None
        wait = self.delay(attempt, retry_after)
        if remaining is not None and wait + self.min_attempt_s > remaining:
            return None
        return wait
