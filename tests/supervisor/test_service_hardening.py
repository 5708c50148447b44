"""The supervisor service against misbehaving clients (issue 14, items 8, 12 and 13): header bytes
that are not UTF-8 get the JSON 400, the Bearer scheme is read in any case (as the trace viewer
reads it), slow clients are cut off; and policy ids are matched whole before they reach Redis."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis
from structlog.testing import capture_logs

from infra.settings import Settings
from supervisor.policy_store import PolicyStore, UnknownVersion
from supervisor.service import STATE, create_service_app
from tests.support.raw_http import dribble_headers, raw_request, status_and_json
from tests.support.supervisor import SUPERVISOR_TOKEN


async def _raw(server: TestServer, data: bytes) -> tuple[int, Any]:
    assert server.port is not None
    return status_and_json(await raw_request(server.port, data))


async def test_undecodable_authorization_is_a_json_400_and_bearer_any_case(
    service: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Was: 500 with the traceback on stderr; and ``bearer`` refused though the viewer took it."""
    caplog.set_level(logging.ERROR)
    body = b'{"call_id": "CAh1"'  # not JSON: a request that passes auth stops at the parser
    head = b"POST /v1/decide HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
    length = b"Content-Length: %d\r\n\r\n" % len(body)
    with capture_logs() as logs:
        status, answer = await _raw(service, head + b"Authorization: Bearer \xff\xfe\r\n" + length + body)
    assert status == 400 and answer["error"]["code"] == "bad_header"
    assert [e["header"] for e in logs if e["event"] == "http.header_undecodable"] == ["Authorization"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    for scheme in (b"Bearer", b"bearer", b"BEARER"):
        auth = b"Authorization: " + scheme + b" " + SUPERVISOR_TOKEN.encode() + b"\r\n"
        status, answer = await _raw(service, head + auth + length + body)
        assert (status, answer["error"]["code"]) == (400, "invalid_json"), scheme
    wrong = b"Authorization: bearer wrong-token-0123456789\r\n"
    status, _ = await _raw(service, head + wrong + length + body)
    assert status == 401
    assert service.app[STATE].simulator.state.text_requests == []


async def test_slow_headers_are_cut_off(service_settings: Callable[..., Settings]) -> None:
    server = TestServer(create_service_app(service_settings(http_read_timeout_s=1.0), host="127.0.0.1"))
    await server.start_server()
    try:
        answered, after_s = await dribble_headers(server.port)  # complete after 3 s, if ever
        assert answered == b"" and after_s < 2.0
    finally:
        await server.close()


async def test_policy_ids_are_matched_whole(redis: Redis, key_prefix: str) -> None:
    """Was: ``re.match`` with ``$``, so ``returns\\n`` passed the check and reached Redis."""
    store = PolicyStore(redis, key_prefix)
    for bad in ("returns\n", "returns\r\n", "re\nturns"):
        with pytest.raises(UnknownVersion, match="not a valid policy id"):
            await store.history(bad)
        with pytest.raises(UnknownVersion, match="not a valid policy id"):
            await store.get_version(bad, 1)
