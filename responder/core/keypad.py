"""How many key presses a call may record: a few a second, with a short burst.

A person dialling an account number presses a key every few hundred milliseconds; a script
can send thousands of DTMF frames a second, and each recorded press is a history item, a
live-transcript event and a log line. :class:`KeyRate` is a token bucket over the presses'
arrival times: ``burst`` at once, then ``rate_per_s`` sustained. A press over it is not
recorded; the recorder counts it (``responder_dtmf_refused_total``) and logs one warning now
and then, never one per press. The call itself goes on.

Arrival times are passed in, not read when the press is handled: presses that came before the
call's engine session was attached are buffered by the transport and handed over at once,
each with the time it arrived.
"""

from __future__ import annotations

import time
from typing import Final

DTMF_RATE_PER_S: Final = 10.0
DTMF_BURST: Final = 20
EARLY_KEYS_MAX: Final = 64  # presses kept while a call's session is being set up


class KeyRate:
    def __init__(self, rate_per_s: float = DTMF_RATE_PER_S, burst: int = DTMF_BURST) -> None:
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self._tokens = float(burst)
        self._updated: float | None = None
        self.refused = 0  # presses over the rate, this call

    def allow(self, at: float | None = None) -> bool:
        """Whether a press that arrived at ``at`` (monotonic; now when None) may be recorded."""
        now = time.monotonic() if at is None else at
        if self._updated is not None and now > self._updated:
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate_per_s)
        if self._updated is None or now > self._updated:
            self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.refused += 1
        return False
