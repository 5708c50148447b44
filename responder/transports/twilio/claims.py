"""Once-only claims of a Twilio call, in Redis (so they hold across instances).

A signed webhook stays valid forever: Twilio's signature covers the URL and the form, not a
time. So the webhook claims its ``CallSid`` (``SET NX`` for as long as a call's record lives):
a replay of a captured request, byte for byte, or a late retry finds the claim and starts
nothing, and a known or ended call's record is never reopened. The stream token the webhook
hands out is claimed by the first media stream that shows it (``SET NX`` until it expires):
one token opens one stream, never two at once.
"""

from __future__ import annotations

from redis.asyncio import Redis


def call_claim_key(prefix: str, call_sid: str) -> str:
    return f"{prefix}:twilio:claimed:{{{call_sid}}}"


def stream_claim_key(prefix: str, call_sid: str) -> str:
    return f"{prefix}:twilio:stream:{{{call_sid}}}"


async def claim_call(redis: Redis, prefix: str, call_sid: str, ttl_s: int) -> bool:
    """True for the first webhook of ``call_sid``; False when it was seen before."""
    return bool(await redis.set(call_claim_key(prefix, call_sid), "1", nx=True, ex=max(1, ttl_s)))


async def claim_stream(redis: Redis, prefix: str, call_sid: str, stream_sid: str, ttl_s: int) -> bool:
    """True for the first stream showing ``call_sid``'s token; False when one did already."""
    return bool(await redis.set(stream_claim_key(prefix, call_sid), stream_sid, nx=True, ex=max(1, ttl_s)))
