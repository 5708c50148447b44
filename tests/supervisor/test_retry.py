"""The backoff policy shared by the supervisor client and the text-model client."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from supervisor.retry import Backoff, deadline_scope, remaining_s, retry_after_s, retryable_status


def test_retryable_statuses() -> None:
    statuses = (200, 400, 401, 403, 404, 408, 409, 429, 500, 502, 503, 504)
    assert [s for s in statuses if retryable_status(s)] == [429, 500, 502, 503, 504]
    assert not retryable_status(None)


def test_retry_after_forms() -> None:
    assert retry_after_s({"retry-after": "2"}) == 2.0
    assert retry_after_s({"retry-after": "0.5"}) == 0.5
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "9"}) == 0.25  # the finer one wins
    date = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    value = retry_after_s({"retry-after": date})
    assert value is not None and 28 <= value <= 30
    past = format_datetime(datetime.now(UTC) - timedelta(seconds=30), usegmt=True)
    assert retry_after_s({"retry-after": past}) == 0.0
    for garbage in ("soon", "-1", "nan", "99999", ""):
        assert retry_after_s({"retry-after": garbage}) is None, garbage
    assert retry_after_s({}) is None and retry_after_s(None) is None


def test_delay_grows_is_jittered_capped_and_floored_by_retry_after() -> None:
    backoff = Backoff(attempts=10, base_s=0.2, max_s=1.0)
    rng = random.Random(7)
    for retry, cap in ((1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (8, 1.0)):
        delays = [backoff.delay(retry, rng=rng) for _ in range(200)]
        assert all(cap / 2 <= d <= cap for d in delays), (retry, min(delays), max(delays))
        assert max(delays) - min(delays) > cap / 4  # jitter spreads retries out
    # never sooner than asked, spread out by up to half this retry's backoff on top
    waits = [backoff.delay(1, retry_after=3.0, rng=rng) for _ in range(200)]
    assert all(3.0 <= w <= 3.1 for w in waits) and max(waits) - min(waits) > 0.05


def test_next_delay_stops_at_attempts_and_deadline() -> None:
    backoff = Backoff(attempts=3, base_s=0.1, max_s=0.1, min_attempt_s=0.25)
    assert backoff.next_delay(1, None, None) is not None
    assert backoff.next_delay(2, None, 10.0) is not None
    assert backoff.next_delay(3, None, 10.0) is None  # three tries in all
    assert backoff.next_delay(1, None, 0.3) is None  # 0.05..0.1 s wait + 0.25 s try > 0.3 s left
    assert backoff.next_delay(1, 5.0, 4.0) is None  # Retry-After past the deadline: stop now
    wait = backoff.next_delay(1, 1.0, 4.0)
    assert wait is not None and 1.0 <= wait <= 1.05


def test_retry_after_over_the_cap_is_not_waited_even_without_a_deadline() -> None:
    backoff = Backoff(attempts=5, max_retry_after_s=10.0)
    assert backoff.next_delay(1, 3600.0 - 1, None) is None
    assert backoff.next_delay(1, 10.5, None) is None
    wait = backoff.next_delay(1, 9.0, None)
    assert wait is not None and 9.0 <= wait <= 9.1


async def test_deadline_scope_counts_down_and_resets() -> None:
    assert remaining_s() is None
    loop = asyncio.get_running_loop()
    with deadline_scope(loop.time() + 2.0):
        left = remaining_s()
        assert left is not None and 1.5 < left <= 2.0
    assert remaining_s() is None
