"""Sockets that have not shown their credential yet, and calls admitted ahead of their socket.

A Twilio media stream is a WebSocket whose credential (the one-time stream token) only comes
in its first frames, after the upgrade. Until then the socket is *unauthenticated*: it takes
no call capacity, only a place among a few per client (:class:`PendingSockets`; the transport
also gives it a short deadline). Twilio sends its ``start`` within milliseconds of the upgrade,
so the per-client cap counts the sockets that have stayed unauthenticated past a short grace:
a burst of real calls from one Twilio address passes (up to :data:`BURST_FACTOR` times the
cap), a client holding silent sockets does not. A socket whose upgrade Twilio signed
(``X-Twilio-Signature`` over the stream's URL) waits in places of its own, with a larger cap on
young sockets per client (every call comes from Twilio's few addresses): sockets nobody signed
cannot take them, so filling the unsigned places turns away no real call. The call's capacity was
taken when its signed webhook was answered: that admission is kept as a :class:`Reservations`
entry until the stream with the valid token claims it, or for a few seconds (a stream arriving
later is admitted anyway).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final, Literal

from infra.metrics import SOCKETS_REFUSED, UNAUTHENTICATED_SOCKETS
from responder.runtime.admission import Ticket

SocketRefusal = Literal[
    "origin",  # a browser page's Origin on a socket no browser opens
    "client_cap",  # this client holds its share of unauthenticated sockets already
    "total_cap",  # every place for unauthenticated sockets is taken
    "no_start",  # closed (by the deadline or the client) before a valid start
    "bad_token",  # the stream token does not verify
    "token_used",  # the stream token was claimed by another stream already
    "unavailable",  # the claim could not be checked (Redis)
]
ORIGIN: Final = "origin"
CLIENT_CAP: Final = "client_cap"
TOTAL_CAP: Final = "total_cap"
NO_START: Final = "no_start"
BAD_TOKEN: Final = "bad_token"
TOKEN_USED: Final = "token_used"
UNAVAILABLE: Final = "unavailable"
GRACE_S: Final = 0.5  # a socket still unauthenticated this long after its upgrade is a silent one
BURST_FACTOR: Final = 4  # young sockets of one client, as a multiple of its cap of silent ones
SIGNED_BURST_FACTOR: Final = 2  # signed ones: twice that (Twilio sends start within milliseconds)


def socket_refused(transport: str, reason: SocketRefusal) -> None:
    SOCKETS_REFUSED.labels(transport=transport, reason=reason).inc()


class PendingRefused(Exception):
    def __init__(self, reason: SocketRefusal) -> None:
        super().__init__(reason)
        self.reason: SocketRefusal = reason


class Pending:
    """One unauthenticated socket's place; released once (authenticated, or gone)."""

    def __init__(
        self, sockets: PendingSockets, transport: str, client: str, since: float, *, signed: bool = False
    ) -> None:
        self._sockets = sockets
        self.transport = transport
        self.client = client
        self.since = since
        self.signed = signed
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._sockets._release(self)


class _Pool:
    """One set of places: its sockets by client key. ``burst``: the young sockets one client
    may hold, as a multiple of its cap of silent ones."""

    def __init__(self, burst: int) -> None:
        self.burst = burst
        self.by_client: dict[str, list[Pending]] = {}

    @property
    def open(self) -> int:
        return sum(map(len, self.by_client.values()))

    def refusal(self, client: str, now: float, per_client: int, total: int) -> SocketRefusal | None:
        if self.open >= total:
            return TOTAL_CAP
        mine = self.by_client.get(client, ())
        silent = sum(1 for p in mine if now - p.since >= GRACE_S)
        if silent >= per_client or len(mine) >= per_client * self.burst:
            return CLIENT_CAP
        return None

    def remove(self, pending: Pending) -> None:
        mine = self.by_client.get(pending.client, [])
        if pending in mine:
            mine.remove(pending)
        if not mine:
            self.by_client.pop(pending.client, None)


class PendingSockets:
    """Per client key, at most ``per_client`` sockets unauthenticated for longer than
    :data:`GRACE_S` (and ``BURST_FACTOR`` times as many in all); ``total`` for all clients.
    Sockets whose upgrade was signed have ``total`` places of their own (``signed``)."""

    def __init__(self, per_client: int, total: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_client = per_client
        self.total = total
        self._clock = clock
        self._unsigned = _Pool(BURST_FACTOR)
        self._signed = _Pool(BURST_FACTOR * SIGNED_BURST_FACTOR)
        self._by_client = self._unsigned.by_client
        self._signed_by_client = self._signed.by_client

    @property
    def open(self) -> int:
        return self._unsigned.open

    @property
    def open_signed(self) -> int:
        return self._signed.open

    def enter(self, transport: str, client: str, *, signed: bool = False) -> Pending:
        """A place, or :class:`PendingRefused`. ``signed``: the upgrade carries the platform's
        valid signature; its token is still checked at ``start``, only the places it waits in are
        its own, with a larger cap on young sockets per client (a platform opens many at once
        from few addresses). The signature is the same for every call, so whoever captured one
        header could replay it: past its caps, or once the signed places are all taken, a signed
        socket waits like any other."""
        now = self._clock()
        pool = self._unsigned
        if signed and self._signed.refusal(client, now, self.per_client, self.total) is None:
            pool = self._signed
        elif (refusal := pool.refusal(client, now, self.per_client, self.total)) is not None:
            raise PendingRefused(refusal)
        pending = Pending(self, transport, client, now, signed=pool is self._signed)
        pool.by_client.setdefault(client, []).append(pending)
        UNAUTHENTICATED_SOCKETS.labels(transport=transport).inc()
        return pending

    def _release(self, pending: Pending) -> None:
        UNAUTHENTICATED_SOCKETS.labels(transport=pending.transport).dec()
        (self._signed if pending.signed else self._unsigned).remove(pending)


class Reservations:
    """Calls admitted before their socket arrived (key: the call id), each for a limited time."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[Ticket, asyncio.TimerHandle]] = {}

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, key: str, ticket: Ticket, ttl_s: float) -> None:
        self.release(key)
        timer = asyncio.get_running_loop().call_later(ttl_s, self.release, key)
        self._held[key] = (ticket, timer)

    def claim(self, key: str) -> Ticket | None:
        """The reservation's ticket, now the caller's to release; None if there is none here."""
        held = self._held.pop(key, None)
        if held is None:
            return None
        held[1].cancel()
        return held[0]

    def release(self, key: str) -> None:
        ticket = self.claim(key)
        if ticket is not None:
            ticket.release()

    def release_all(self) -> None:
        for key in list(self._held):
            self.release(key)
