"""Who a request counts as for per-client limits (``client_address``), and the browser-call
rate limit keyed by it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request

from infra.settings import Settings
from responder.runtime.client_address import MAX_CHARS, client_address, client_of
from tests.support.service import RunningService


@pytest.mark.parametrize(
    ("address", "client"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),  # the same line: the same client
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("not an address", "not an address"),
    ],
)
def test_an_ipv6_client_is_its_64(address: str, client: str) -> None:
    assert client_of(address) == client


def test_only_the_proxys_own_entry_of_x_forwarded_for_counts(make_settings: Callable[..., Settings]) -> None:
    trusting = make_settings(trust_forwarded_for=True)
    header = {"X-Forwarded-For": "198.51.100.1, 2001:db8:9:9::5"}
    request = make_mocked_request("GET", "/calls/ws", headers=header)
    assert client_address(request, trusting) == "2001:db8:9:9::/64"
    long = make_mocked_request("GET", "/", headers={"X-Forwarded-For": "x" * 5000})
    assert client_address(long, trusting) == "x" * MAX_CHARS
    untrusting = client_address(request, make_settings())  # the header is not looked at
    assert untrusting == (request.remote or "unknown") and "198.51.100.1" not in untrusting


async def test_browser_calls_are_rate_limited_by_the_proxys_entry_not_the_clients(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    """Before: the limit took the first entry of X-Forwarded-For, which the client writes, so a
    new made-up entry per call passed it (12 of 12 calls, burst 3). Now the proxy's own entry
    (the last) is the client, whatever comes before it."""
    svc: RunningService = await start_service(
        make_settings(trust_forwarded_for=True, call_rate_burst=3, call_rate_per_minute=1, greeting=False)
    )
    url = svc.url.replace("http", "ws", 1) + "/calls/ws"
    statuses = []
    async with aiohttp.ClientSession() as http:
        for i in range(6):
            headers = {"X-Forwarded-For": f"198.51.100.{i}, 10.9.9.9"}
            try:
                async with http.ws_connect(url, headers=headers) as ws:
                    statuses.append(101)
                    await ws.send_json({"type": "stop"})
            except aiohttp.WSServerHandshakeError as exc:
                statuses.append(exc.status)
    assert statuses == [101, 101, 101, 429, 429, 429]
