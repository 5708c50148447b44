"""The places of sockets that have not shown their stream token yet (``PendingSockets``)."""

from __future__ import annotations

import pytest

from responder.runtime.handshake import (
    BURST_FACTOR,
    GRACE_S,
    SIGNED_BURST_FACTOR,
    PendingRefused,
    PendingSockets,
)
from tests.support.clock import Clock


def test_signed_upgrades_wait_apart_from_unsigned_ones_and_a_replayed_header_buys_little() -> None:
    clock = Clock()
    sockets = PendingSockets(per_client=2, total=4, clock=clock)
    squatters = [sockets.enter("twilio", f"198.51.100.{i}") for i in range(2) for _ in range(2)]
    with pytest.raises(PendingRefused):  # every unsigned place is taken
        sockets.enter("twilio", "203.0.113.9")
    # Twilio opens many streams at once from one address: no cap on young signed sockets
    burst = [sockets.enter("twilio", "203.0.113.9", signed=True) for _ in range(4)]
    assert all(p.signed for p in burst) and sockets.open_signed == 4
    for p in burst:
        p.release()
    # whoever replays a captured signature keeps at most per_client silent signed sockets, then
    # waits like anyone (here: no unsigned place is left)
    clock.now += GRACE_S
    replayed = [sockets.enter("twilio", "192.0.2.66", signed=True) for _ in range(2)]
    clock.now += GRACE_S
    with pytest.raises(PendingRefused):
        sockets.enter("twilio", "192.0.2.66", signed=True)
    fresh = sockets.enter("twilio", "203.0.113.9", signed=True)  # Twilio's next stream still has room
    assert fresh.signed
    for p in [*squatters, *replayed, fresh]:
        p.release()
        p.release()  # once only
    assert (sockets.open, sockets.open_signed) == (0, 0)


def test_a_burst_of_replayed_signed_sockets_is_capped_too() -> None:
    """Review: the cap counted only sockets past the grace, so a burst inside it took every
    signed place and left them all silent."""
    clock = Clock()
    sockets = PendingSockets(per_client=2, total=256, clock=clock)
    cap = 2 * BURST_FACTOR * SIGNED_BURST_FACTOR
    burst = [sockets.enter("twilio", "192.0.2.66", signed=True) for _ in range(cap + 3)]
    assert sum(p.signed for p in burst) == cap and sockets.open_signed == cap
    clock.now += GRACE_S
    twilio = sockets.enter("twilio", "203.0.113.9", signed=True)
    assert twilio.signed  # Twilio's still has a place
    for p in [*burst, twilio]:
        p.release()  # (the gauge of unauthenticated sockets is the process's own)
    assert (sockets.open, sockets.open_signed) == (0, 0)


def test_when_the_signed_places_are_full_a_signed_socket_waits_like_any_other() -> None:
    sockets = PendingSockets(per_client=2, total=2, clock=Clock())
    signed = [sockets.enter("twilio", "203.0.113.9", signed=True) for _ in range(2)]
    third = sockets.enter("twilio", "203.0.113.9", signed=True)  # not a 429 while unsigned room is left
    assert not third.signed and sockets.open == 1
    for p in [*signed, third]:
        p.release()
    assert (sockets.open, sockets.open_signed) == (0, 0)


def test_a_refused_client_leaves_no_entry_behind() -> None:
    sockets = PendingSockets(per_client=1, total=100, clock=Clock())
    held = [sockets.enter("twilio", "198.51.100.1") for _ in range(BURST_FACTOR)]
    with pytest.raises(PendingRefused):
        sockets.enter("twilio", "198.51.100.1")
    for p in held:
        p.release()
    assert sockets._by_client == {} and sockets._signed_by_client == {}
