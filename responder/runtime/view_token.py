"""Per-call viewing tokens for the live transcript.

A live transcript is customer data: ``GET /calls/{id}/events`` needs either the operator's
admin token (trace viewer) or the token the service gave the browser that started the call
(``view_token`` in the WebSocket ``call`` frame, ``X-Call-Token`` for WebRTC). The token is
an HMAC of the call id under ``RESPONDER_SESSION_SECRET``, so any instance sharing that
secret can check it without storing anything. Browsers' EventSource cannot send headers, so
it travels as ``?token=``.
"""

from __future__ import annotations

import hashlib
import hmac

_CONTEXT = b"responder live transcript v1:"


def view_token(secret: bytes, call_id: str) -> str:
    return hmac.new(secret, _CONTEXT + call_id.encode(), hashlib.sha256).hexdigest()[:40]


def check_view_token(secret: bytes, call_id: str, offered: str) -> bool:
    return bool(offered) and hmac.compare_digest(view_token(secret, call_id).encode(), offered.encode())
