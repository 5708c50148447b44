"""How many key presses a call may record: a few a second, with a short burst.

A person dialling an account number presses a key every few hundred milliseconds; a script
can send thousands of DTMF frames a second, and each recorded press is a history item, a
live-transcript event and a log line. :func:`key_rate` is a token bucket
(:class:`infra.logs.LogBudget`) over the presses' arrival times: ``burst`` at once, then
``rate_per_s`` sustained. A press over it is not recorded; the recorder counts it
(``responder_dtmf_refused_total``) and logs one warning now and then, never one per press.
The call itself goes on.

Arrival times are passed in, not read when the press is handled: presses that came before the
call's engine session was attached are buffered by the transport and handed over at once,
each with the time it arrived.
"""

from __future__ import annotations

from typing import Final

from infra.logs import LogBudget

DTMF_RATE_PER_S: Final = 10.0
DTMF_BURST: Final = 20
EARLY_KEYS_MAX: Final = 64  # presses kept while a call's session is being set up


def key_rate(rate_per_s: float = DTMF_RATE_PER_S, burst: int = DTMF_BURST) -> LogBudget:
    """A call's key-press budget: the same token bucket as a log budget, fed arrival times
    (``allow(at)``, monotonic)."""
    return LogBudget(burst=burst, per_s=rate_per_s, from_first=True)
