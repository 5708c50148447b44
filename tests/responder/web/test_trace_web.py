"""The trace viewer's HTTP side: admin token, call id checks, filters, policy version text."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import aiohttp

from callrecord.decisions import Decision, PolicyRef, ToolCallRecord
from callrecord.history import CallHistory
from infra.settings import Settings

ADMIN = "test-admin-token-1234"
BEARER = {"Authorization": f"Bearer {ADMIN}"}


async def _seed(history: CallHistory) -> None:
    """Two finished calls written through the real history code: one grounded, one timed out."""
    await history.start_call("CAgood", transport="twilio")
    await history.add_decision(
        "CAgood",
        Decision(
            call_id="CAgood", model="gpt-4.1", rounds=2, text="Sixty days.", latency_ms=120.0,
            policies=[PolicyRef(id="returns", version=3)],
            tool_calls=[ToolCallRecord(name="lookupPolicyDocument", arguments={"topic": "tent"},
                                       result_summary="returns@3", ms=0.5, round=1)],
        ),
    )  # fmt: skip
    await history.set_meta("CAgood", status="ended", duration_s=12.5)
    await history.start_call("CAslow", transport="twilio")
    await history.add_decision("CAslow", Decision(call_id="CAslow", outcome="timeout", text="Sorry."))


async def test_viewer_needs_the_admin_token(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc = await start_service(make_settings(admin_token=ADMIN))
    await _seed(svc.services.history)
    urls = ["/traces", "/traces/CAgood", "/api/traces", "/api/traces/CAgood", "/policies/returns/versions/3"]
    async with aiohttp.ClientSession() as http:
        for path in urls:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {ADMIN}"}):
                async with http.get(svc.url + path, headers=headers) as resp:
                    assert resp.status == 401, path
                    assert "Sixty days" not in await resp.text()
        async with http.get(svc.url + "/api/traces/CAgood", headers=BEARER) as resp:
            assert resp.status == 200
            trace = await resp.json()
    assert trace["decisions"][0]["text"] == "Sixty days." and trace["policies"] == ["returns@3"]
    assert trace["active"] is False and trace["status"] == "ended"


async def test_without_a_configured_token_everything_is_refused(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc = await start_service(make_settings(admin_token=None))
    async with aiohttp.ClientSession() as http:
        async with http.get(svc.url + "/api/traces", headers={"Authorization": "Bearer "}) as resp:
            assert resp.status == 401
        async with http.post(svc.url + "/traces/login", data={"token": ""}) as resp:
            assert resp.status == 401


async def test_login_form_sets_a_cookie_that_is_not_the_token(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc = await start_service(make_settings(admin_token=ADMIN))
    await _seed(svc.services.history)
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        async with http.post(svc.url + "/traces/login", data={"token": "nope"}) as resp:
            assert resp.status == 401
        login = {"token": ADMIN, "next": "/traces/CAgood"}
        async with http.post(svc.url + "/traces/login", data=login, allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/traces/CAgood"
            cookie = resp.cookies["responder_admin"]
            assert cookie.value and ADMIN not in cookie.value and cookie["httponly"]
        async with http.get(svc.url + "/traces/CAgood") as resp:
            assert resp.status == 200 and "trace.js" in await resp.text()
        async with http.get(svc.url + "/api/traces") as resp:
            assert resp.status == 200
        evil = {"token": ADMIN, "next": "//evil.example/traces"}
        async with http.post(svc.url + "/traces/login", data=evil, allow_redirects=False) as resp:
            assert resp.headers["Location"] == "/traces"


async def test_filters_and_call_id_checks(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc = await start_service(make_settings(admin_token=ADMIN))
    await _seed(svc.services.history)

    async def ids(http: aiohttp.ClientSession, **query: str) -> list[str]:
        async with http.get(svc.url + "/api/traces", params=query, headers=BEARER) as resp:
            assert resp.status == 200
            return [c["call_id"] for c in (await resp.json())["calls"]]

    async with aiohttp.ClientSession() as http:
        assert set(await ids(http)) == {"CAgood", "CAslow"}
        assert await ids(http, outcome="timeout") == ["CAslow"]
        assert await ids(http, outcome="ok") == ["CAgood"]
        assert await ids(http, policy="returns") == ["CAgood"]
        assert await ids(http, policy="returns@3") == ["CAgood"]
        assert await ids(http, policy="returns@2") == []
        assert await ids(http, since=str(time.time() + 60)) == []
        assert set(await ids(http, since=str(time.time() - 60), until=str(time.time() + 1))) == {
            "CAgood",
            "CAslow",
        }
        for query in ({"outcome": "bogus"}, {"since": "yesterday"}, {"limit": "x"}):
            async with http.get(svc.url + "/api/traces", params=query, headers=BEARER) as resp:
                assert resp.status == 400
        for bad in ("CA*", "CA%20x", "CA:" + "x" * 200):
            async with http.get(svc.url + "/api/traces/" + bad, headers=BEARER) as resp:
                assert resp.status == 400, bad
        async with http.get(svc.url + "/api/traces/CA%7Bx%7D", headers=BEARER) as resp:
            assert resp.status == 404  # braces (a Redis hash tag) never even match the route
        async with http.get(svc.url + "/api/traces/CAunknown", headers=BEARER) as resp:
            assert resp.status == 404


async def test_policy_version_links_serve_the_exact_version(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc = await start_service(make_settings(admin_token=ADMIN))
    async with aiohttp.ClientSession() as http:
        async with http.get(svc.url + "/policies/returns/versions/3", headers=BEARER) as resp:
            assert resp.status == 200 and resp.content_type == "text/plain"
            text = await resp.text()
        async with http.get(svc.url + "/policies/returns/versions/99", headers=BEARER) as resp:
            assert resp.status == 404
        async with http.get(svc.url + "/policies/no-such-policy/versions/1", headers=BEARER) as resp:
            assert resp.status == 404
    assert "id: returns" in text and "version: 3" in text and "Trail Tested" in text


async def test_policy_version_link_serves_a_stored_version_not_the_file(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    """A decision grounded in a version the editor saved later still links to that exact text;
    the older version keeps its own text."""
    from responder.web.editor_routes import POLICIES

    svc = await start_service(make_settings(admin_token=ADMIN))
    store = svc.server.app[POLICIES].store
    v3 = (await store.get_version("returns", 3)).content
    edited = v3.replace("Trail Tested", "Trail Proven")
    record = await store.save(edited, author="auditor-test", policy_id="returns")
    assert record.version > 3
    async with aiohttp.ClientSession() as http:
        url = f"{svc.url}/policies/returns/versions/{record.version}"
        async with http.get(url, headers=BEARER) as resp:
            assert resp.status == 200
            new_text = await resp.text()
        async with http.get(svc.url + "/policies/returns/versions/3", headers=BEARER) as resp:
            old_text = await resp.text()
        async with http.get(url) as resp:
            assert resp.status == 401  # policy text behind the same admin token
    assert new_text == record.content and "Trail Proven" in new_text
    assert old_text == v3 and "Trail Proven" not in old_text
