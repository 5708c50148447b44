"""The call page over plain HTTP: strict CSP, the mode in /calls/config, no secret anywhere."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp

from infra.settings import Settings
from responder.web.call import STATIC_DIR
from tests.support.service import RunningService

SECRET = "sk-test-secret-never-in-a-browser"


async def _fetch_all(svc: RunningService) -> dict[str, tuple[int, dict[str, str], str]]:
    paths = ["/", "/call", "/calls/config"] + [f"/call/static/{p.name}" for p in STATIC_DIR.iterdir()]
    out = {}
    async with aiohttp.ClientSession() as http:
        for path in paths:
            async with http.get(svc.url + path) as resp:
                out[path] = (resp.status, dict(resp.headers), await resp.text())
    return out


async def test_keyed_service_offers_webrtc_and_leaks_no_key(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc: RunningService = await start_service(make_settings(openai_api_key=SECRET))
    pages = await _fetch_all(svc)
    assert all(status == 200 for status, _, _ in pages.values()), {p: s for p, (s, _, _) in pages.items()}
    assert pages["/calls/config"][2].replace(" ", "") == '{"mode":"webrtc","modes":["webrtc","websocket"]}'
    for path, (_, headers, body) in pages.items():
        assert SECRET not in body and SECRET not in str(headers), path
    _, headers, body = pages["/call"]
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "http" not in csp
    assert "<script>" not in body and "style=" not in body  # nothing inline: the CSP allows none
    assert pages["/"][2] == body


async def test_keyless_service_offers_the_websocket_transport(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc: RunningService = await start_service(make_settings())
    async with aiohttp.ClientSession() as http, http.get(svc.url + "/calls/config") as resp:
        assert await resp.json() == {"mode": "websocket", "modes": ["websocket", "webrtc"]}
