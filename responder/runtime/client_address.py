"""Who is asking, for per-client limits: the peer's address, or the trusted proxy's word.

With ``RESPONDER_TRUST_FORWARDED_FOR`` (only behind a proxy you trust), the client is the
last address of ``X-Forwarded-For``: the one the proxy itself added. Addresses before it
were sent by the client and prove nothing (a proxy that replaces the header gives one
address, the same). The value is capped, since it comes from a header.
"""

from __future__ import annotations

from aiohttp import web

from infra.settings import Settings

MAX_CHARS = 64  # an IPv6 address with a zone fits


def client_address(request: web.Request, settings: Settings) -> str:
    if settings.trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For", "").rsplit(",", 1)[-1].strip()
        if forwarded:
            return forwarded[:MAX_CHARS]
    return request.remote or "unknown"
