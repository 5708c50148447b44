"""Admin token of the trace viewer: ``Authorization: Bearer <RESPONDER_ADMIN_TOKEN>`` or a cookie.

Transcripts are customer data, so every page and API of the viewer needs the token. A
browser logs in once through a small form; the cookie it gets holds an HMAC derived from
the token (never the token itself), is HttpOnly and SameSite=Strict. Comparisons are
constant-time. Without a configured token, everything answers 401.
"""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web
from pydantic import SecretStr

COOKIE = "responder_admin"
_COOKIE_CONTEXT = b"responder trace viewer session v1"


class AdminAuth:
    def __init__(self, token: SecretStr | None) -> None:
        secret = token.get_secret_value().encode() if token is not None else b""
        self._token = secret
        self._cookie = hmac.new(secret, _COOKIE_CONTEXT, hashlib.sha256).hexdigest() if secret else ""

    @property
    def configured(self) -> bool:
        return bool(self._token)

    def check_token(self, offered: str) -> bool:
        return self.configured and hmac.compare_digest(self._token, offered.strip().encode())

    def allowed(self, request: web.Request) -> bool:
        if not self.configured:
            return False
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value:
            return self.check_token(value)
        cookie = request.cookies.get(COOKIE, "")
        return bool(cookie) and hmac.compare_digest(self._cookie.encode(), cookie.encode())

    def set_cookie(self, response: web.StreamResponse, secure: bool) -> None:
        response.set_cookie(
            COOKIE, self._cookie, httponly=True, samesite="Strict", secure=secure, path="/", max_age=12 * 3600
        )
