"""Admin access of the trace viewer: ``Authorization: Bearer <RESPONDER_ADMIN_TOKEN>`` or a session.

Transcripts are customer data, so every page and API of the viewer needs the token. A browser
signs in once through a small form and gets a session: a random id (256 bits) per sign-in,
kept in Redis under a digest of it (``{prefix}:admin:session:<sha256>``) for
``admin_session_ttl_s``, so that every instance knows it and a logout revokes it everywhere.
The stored value is a fingerprint of the admin token: a new token ends every session. The
cookie holding the id is HttpOnly, SameSite=Strict, and Secure when the request came over
https — TLS here, an https ``RESPONDER_PUBLIC_URL``, or ``X-Forwarded-Proto: https`` from a
proxy (honoured from anyone: a client claiming https only makes its own cookie stricter).

Sign-in and logout are POSTs that must come from this site: a request whose
``Sec-Fetch-Site`` is not ``same-origin`` — or, from a browser too old to send it, whose
``Origin`` is another host or ``null`` — gets 403 (``trace_viewer.cross_site_refused``);
clients that send neither header (curl) are not browsers, which another site could make
send a request. (The viewer's pages use ``Referrer-Policy: same-origin``, so that such a
browser sends its real ``Origin`` with the form rather than ``null``.) Token comparisons are constant-time;
wrong tokens are counted and throttled (:mod:`responder.web.login_throttle`). Without a
configured token, everything answers 401.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import structlog
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from infra.http import bearer_token
from infra.settings import Settings
from responder.runtime.client_address import client_address
from responder.runtime.services import SERVICES
from responder.web.login_throttle import LoginThrottle

log = structlog.get_logger("web.trace")

COOKIE = "responder_admin"
_FINGERPRINT_CONTEXT = b"responder trace viewer session v2"
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{32,128}")
Verdict = Literal["allowed", "denied", "throttled", "unavailable"]


@dataclass(frozen=True)
class Access:
    verdict: Verdict
    retry_after_s: int = 0

    @property
    def allowed(self) -> bool:
        return self.verdict == "allowed"


DENIED = Access("denied")


class AdminAuth:
    def __init__(self, settings: Settings) -> None:
        token = settings.admin_token
        secret = token.get_secret_value().encode() if token is not None else b""
        self._token = secret
        self._token_digest = hashlib.sha256(secret).digest()
        self._fingerprint = hmac.new(secret, _FINGERPRINT_CONTEXT, hashlib.sha256).hexdigest().encode()
        self.session_ttl_s = settings.admin_session_ttl_s
        self.throttle = LoginThrottle(
            settings.admin_login_failures_per_client,
            settings.admin_login_failures_total,
            settings.admin_login_window_s,
        )

    @property
    def configured(self) -> bool:
        return bool(self._token)

    def check_token(self, offered: str) -> bool:
        """Constant-time, over SHA-256 digests: not even the token's length shows."""
        digest = hashlib.sha256(offered.strip().encode("utf-8", "surrogateescape")).digest()
        return self.configured and hmac.compare_digest(self._token_digest, digest)

    async def access(self, request: web.Request) -> Access:
        """The bearer token when one is offered (throttled like a sign-in), else the session."""
        if not self.configured:
            return DENIED
        offered = bearer_token(request.headers)
        if offered is not None:
            return await self.try_token(request, offered)
        session = request.cookies.get(COOKIE, "")
        if not _SESSION_ID.fullmatch(session):
            return DENIED
        redis, prefix = _redis(request)
        try:
            stored = await redis.get(_session_key(prefix, session))
        except RedisError:
            return Access("unavailable", 2)
        return Access("allowed") if stored and hmac.compare_digest(stored, self._fingerprint) else DENIED

    async def try_token(self, request: web.Request, offered: str) -> Access:
        """A token offered by the sign-in form or a bearer header: refused unseen while its
        client (or everyone) is throttled, compared in constant time, counted when wrong."""
        if not self.configured:
            return DENIED
        redis, prefix = _redis(request)
        client = client_address(request, request.app[SERVICES].settings)
        try:
            held = await self.throttle.check(redis, prefix, client)
            if held is not None:
                log.warning(
                    "trace_viewer.login_throttled", client=client, limit=held.limit,
                    retry_after_s=held.retry_after_s,
                )  # fmt: skip
                return Access("throttled", held.retry_after_s)
            if self.check_token(offered):
                return Access("allowed")
            await self.throttle.failed(redis, prefix, client)
        except RedisError:
            return Access("unavailable", 2)
        log.warning("trace_viewer.login_failed", client=client)
        return DENIED

    async def start_session(self, request: web.Request, response: web.StreamResponse) -> None:
        """A new session for a request whose token was right; its cookie on ``response``."""
        session = secrets.token_urlsafe(32)
        redis, prefix = _redis(request)
        await redis.set(_session_key(prefix, session), self._fingerprint, ex=self.session_ttl_s)
        response.set_cookie(
            COOKIE, session, httponly=True, samesite="Strict", secure=is_https(request), path="/",
            max_age=self.session_ttl_s,
        )  # fmt: skip

    async def end_session(self, request: web.Request, response: web.StreamResponse) -> None:
        session = request.cookies.get(COOKIE, "")
        if _SESSION_ID.fullmatch(session):
            redis, prefix = _redis(request)
            await redis.delete(_session_key(prefix, session))
        response.del_cookie(COOKIE, path="/", secure=is_https(request), httponly=True, samesite="Strict")


def is_https(request: web.Request) -> bool:
    """Whether the browser reached us over https (see the module's docstring)."""
    if request.secure:
        return True
    public_url = request.app[SERVICES].settings.public_url or ""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return public_url.lower().startswith("https://") or forwarded == "https"


def same_site(request: web.Request) -> bool:
    """A state-changing request that a page of this site sent (or a non-browser client)."""
    fetch_site = request.headers.get("Sec-Fetch-Site")  # set by the browser, never by a page
    if fetch_site is not None:
        return fetch_site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    public_url = request.app[SERVICES].settings.public_url
    ours = {request.host.lower()} | ({urlsplit(public_url).netloc.lower()} if public_url else set())
    return origin != "null" and urlsplit(origin).netloc.lower() in ours


def _session_key(prefix: str, session: str) -> str:
    return f"{prefix}:admin:session:{hashlib.sha256(session.encode()).hexdigest()}"


def _redis(request: web.Request) -> tuple[Redis, str]:
    services = request.app[SERVICES]
    return services.redis.client, services.settings.redis_prefix
