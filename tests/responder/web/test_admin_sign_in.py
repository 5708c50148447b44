"""The trace viewer's sign-in (issue 14, items 9 and 10).

Item 9: the cookie was an HMAC of the token with a constant — the same on every login and
every instance, so it could not expire or be revoked server-side; no ``Secure`` flag behind
https; logout could be triggered cross-site. Now each sign-in is a random session id kept in
Redis with an expiry (shared by the instances), HttpOnly, SameSite=Strict, Secure behind
https, revoked by a logout that is a same-origin POST.

Item 10: 300 wrong tokens in 3.3 s, then the right one still worked. Now failed sign-ins are
counted per client and in all over a sliding window in Redis: beyond either limit, 429 with
``Retry-After``, even for the right token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
from structlog.testing import capture_logs

from infra.settings import Settings
from tests.support.service import RunningService

ADMIN = "test-admin-token-1234"
WRONG = "not-the-admin-token"


async def sign_in(
    http: aiohttp.ClientSession, svc: RunningService, token: str = ADMIN, **headers: str
) -> aiohttp.ClientResponse:
    headers = {"Origin": svc.url, **headers}
    async with http.post(
        svc.url + "/traces/login", data={"token": token}, headers=headers, allow_redirects=False
    ) as resp:
        await resp.read()
        return resp


async def api_status(http: aiohttp.ClientSession, svc: RunningService, **headers: str) -> int:
    async with http.get(svc.url + "/api/traces", headers=headers) as resp:
        return resp.status


def cookie_header(value: str) -> dict[str, str]:
    return {"Cookie": f"responder_admin={value}"}


async def test_each_sign_in_is_a_session_in_redis_that_logout_revokes(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(admin_token=ADMIN)
    one: RunningService = await start_service(settings)
    two: RunningService = await start_service(settings)  # a second instance on the same Redis
    redis, prefix = one.services.redis.client, settings.redis_prefix
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        first, second = await sign_in(http, one), await sign_in(http, one)
        assert first.status == second.status == 303
        a, b = first.cookies["responder_admin"], second.cookies["responder_admin"]
        assert a.value != b.value and len(a.value) >= 32 and ADMIN not in a.value
        assert a["httponly"] and a["samesite"] == "Strict" and a["path"] == "/"
        assert not a["secure"]  # plain http, no https public URL, no X-Forwarded-Proto
        # kept in Redis (under a digest of the id, not the id), with an expiry
        keys = [k.decode() for k in await redis.keys(f"{prefix}:admin:session:*")]
        assert len(keys) == 2 and not any(a.value in k or b.value in k for k in keys)
        for key in keys:
            assert 0 < await redis.ttl(key) <= settings.admin_session_ttl_s
        for svc in (one, two):  # any instance knows the session
            assert await api_status(http, svc, **cookie_header(a.value)) == 200
        assert await api_status(http, one, **cookie_header("forged-" + a.value[7:])) == 401

        # logout: a GET does nothing, a cross-site POST is refused, a same-origin POST revokes
        async with http.get(one.url + "/traces/logout", headers=cookie_header(a.value)) as resp:
            await resp.read()
        assert await api_status(http, two, **cookie_header(a.value)) == 200
        cross_sites = [
            {"Origin": "http://evil.example"},
            {"Origin": "null"},
            {"Sec-Fetch-Site": "cross-site", "Origin": one.url},  # the browser's word counts
        ]
        for cross_site in cross_sites:
            async with http.post(
                one.url + "/traces/logout", headers={**cookie_header(a.value), **cross_site},
                allow_redirects=False,
            ) as resp:  # fmt: skip
                assert resp.status == 403
        assert await api_status(http, two, **cookie_header(a.value)) == 200
        async with http.post(
            one.url + "/traces/logout", headers={**cookie_header(a.value), "Origin": one.url},
            allow_redirects=False,
        ) as resp:  # fmt: skip
            assert resp.status == 303 and resp.cookies["responder_admin"].value == ""
        for svc in (one, two):  # revoked server-side: the old value no longer works anywhere
            assert await api_status(http, svc, **cookie_header(a.value)) == 401
        assert await api_status(http, two, **cookie_header(b.value)) == 200  # the other session stays
        # a sign-in from another site is refused too (login CSRF); Chrome's Origin: null of a
        # same-origin form under a no-referrer policy is fine when Sec-Fetch-Site says so
        assert (await sign_in(http, one, Origin="http://evil.example")).status == 403
        assert (await sign_in(http, one, Origin="null", **{"Sec-Fetch-Site": "same-origin"})).status == 303


async def test_the_cookie_is_secure_behind_https(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc: RunningService = await start_service(make_settings(admin_token=ADMIN))
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        proxied = await sign_in(http, svc, **{"X-Forwarded-Proto": "https"})
        assert proxied.status == 303 and proxied.cookies["responder_admin"]["secure"]
        svc.services.settings.public_url = "https://voice.example"  # as RESPONDER_PUBLIC_URL
        public = await sign_in(http, svc, Origin="https://voice.example")
        assert public.status == 303 and public.cookies["responder_admin"]["secure"]


async def test_failed_sign_ins_are_throttled_per_client_and_in_all(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(
        admin_token=ADMIN, trust_forwarded_for=True,
        admin_login_failures_per_client=5, admin_login_failures_total=12,
    )  # fmt: skip
    one: RunningService = await start_service(settings)
    two: RunningService = await start_service(settings)

    def client(n: int) -> dict[str, str]:
        return {"X-Forwarded-For": f"198.51.100.{n}"}

    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        with capture_logs() as logs:
            for _ in range(5):
                assert (await sign_in(http, one, WRONG, **client(1))).status == 401
            throttled = await sign_in(http, two, ADMIN, **client(1))  # the right token, elsewhere
            assert throttled.status == 429
            assert 0 < int(throttled.headers["Retry-After"]) <= settings.admin_login_window_s
            bearer = {"Authorization": f"Bearer {ADMIN}", **client(1)}
            assert await api_status(http, one, **bearer) == 429  # the API's token check too
            assert (await sign_in(http, one, ADMIN, **client(2))).status == 303  # others may
            wrong_bearer = {"Authorization": f"Bearer {WRONG}", **client(2)}
            assert await api_status(http, one, **wrong_bearer) == 401  # counts as a failure
            for n in range(3, 9):  # six more clients, one failure each: 12 in all
                assert (await sign_in(http, two, WRONG, **client(n))).status == 401
            assert (await sign_in(http, one, ADMIN, **client(20))).status == 429  # everyone now
        throttles = [e for e in logs if e["event"] == "trace_viewer.login_throttled"]
        assert [e["limit"] for e in throttles] == ["per_client", "per_client", "total"]
        assert len([e for e in logs if e["event"] == "trace_viewer.login_failed"]) == 12


async def test_the_window_slides(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(admin_token=ADMIN, admin_login_failures_per_client=2, admin_login_window_s=2.0)
    svc: RunningService = await start_service(settings)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        for _ in range(2):
            assert (await sign_in(http, svc, WRONG)).status == 401
        held = await sign_in(http, svc)
        assert held.status == 429 and held.headers["Retry-After"] in ("1", "2")
        await asyncio.sleep(2.1)  # the failures have left the window
        assert (await sign_in(http, svc)).status == 303


async def test_a_malformed_sign_in_form_is_a_400_not_a_500(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    """Before: a body that is not UTF-8, or a charset nobody knows, failed the handler (500)."""
    svc: RunningService = await start_service(make_settings(admin_token=ADMIN))
    forms = [
        (b"token=\xff\xfe", "application/x-www-form-urlencoded"),
        (b"token=abc", "application/x-www-form-urlencoded; charset=nonsense"),
    ]
    async with aiohttp.ClientSession() as http:
        for body, content_type in forms:
            headers = {"Origin": svc.url, "Content-Type": content_type}
            async with http.post(svc.url + "/traces/login", data=body, headers=headers) as resp:
                assert resp.status == 400, (body, content_type)
        multipart = {"Origin": svc.url, "Content-Type": "multipart/form-data; boundary=xx"}
        junk = b"--xx\r\ngarbage\r\n\r\n"
        async with http.post(svc.url + "/traces/login", data=junk, headers=multipart) as resp:
            assert resp.status == 415  # the page posts a urlencoded form, nothing else
        assert (await sign_in(http, svc)).status == 303  # the form still works
