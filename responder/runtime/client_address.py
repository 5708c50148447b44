"""Who is asking, for per-client limits: the peer's address, or the trusted proxy's word.

With ``RESPONDER_TRUST_FORWARDED_FOR`` (only behind a proxy you trust), the client is the
last address of ``X-Forwarded-For``: the one the proxy itself added. Addresses before it
were sent by the client and prove nothing (a proxy that replaces the header gives one
address, the same). The value is capped, since it comes from a header.

An IPv6 client is its /64: one subscriber line or host is given a whole /64, so counting each
of its addresses apart would give one client 2^64 shares of every per-client limit.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Final

from aiohttp import web

from infra.settings import Settings

MAX_CHARS: Final = 64  # an IPv6 address with a zone fits
IPV6_CLIENT_PREFIX: Final = 64


def client_address(request: web.Request, settings: Settings) -> str:
    if settings.trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For", "").rsplit(",", 1)[-1].strip()
        if forwarded:
            return client_of(forwarded[:MAX_CHARS])
    return client_of(request.remote or "unknown")


@lru_cache(maxsize=4096)
def client_of(address: str) -> str:
    """``address`` itself, or for IPv6 its /64 (``2001:db8:1:2::/64``); an IPv4 address mapped
    into IPv6 is the IPv4 address. Anything that is not an address is kept as it is."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_CLIENT_PREFIX), strict=False))
    return address
