"""The responder's supervisor client against stand-in upstreams (tiny aiohttp servers):
retries with backoff inside the deadline, Retry-After honoured, fallbacks recorded in Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, unused_port
from structlog.testing import capture_logs

from callrecord.decisions import Decision, PolicyRef
from callrecord.history import CallHistory
from infra.settings import Settings
from responder.runtime.supervisor_client import RemoteSupervisor
from supervisor.agent import FALLBACK_TEXT
from supervisor.retry import Backoff

TOKEN = "client-test-token-0123456789"
Reply = Callable[[web.Request], Awaitable[web.Response]]


class Upstream:
    """A stand-in supervisor service answering a scripted list of replies (the last repeats)."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.requests: list[tuple[float, str, dict[str, object]]] = []  # (time, auth, body)
        self.server: TestServer | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(
            (time.monotonic(), request.headers.get("Authorization", ""), await request.json())
        )
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        return await reply(request)

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")


@pytest.fixture
async def upstream() -> AsyncIterator[Callable[..., Awaitable[Upstream]]]:
    started: list[TestServer] = []

    async def start(*replies: Reply) -> Upstream:
        stand_in = Upstream(*replies)
        app = web.Application()
        app.router.add_post("/v1/decide", stand_in.handle)
        stand_in.server = TestServer(app, host="127.0.0.1")
        await stand_in.server.start_server()
        started.append(stand_in.server)
        return stand_in

    yield start
    for server in started:
        await server.close()


def status(code: int, **headers: str) -> Reply:
    async def reply(request: web.Request) -> web.Response:
        return web.json_response(
            {"error": {"code": "x", "message": f"status {code}"}}, status=code, headers=headers
        )

    return reply


def decision_reply() -> Reply:
    async def reply(request: web.Request) -> web.Response:
        body = await request.json()
        decision = Decision(
            call_id=body["call_id"],
            user_item_id=body["user_item_id"],
            context=body["context"],
            text="Tents can be returned within 60 days.",
            policies=[PolicyRef(id="returns", version=3)],
        )
        return web.json_response(text=decision.model_dump_json())

    return reply


def client(url: str, history: CallHistory, deadline_s: float = 3.0, attempts: int = 4) -> RemoteSupervisor:
    backoff = Backoff(attempts=attempts, base_s=0.05, max_s=0.2)
    return RemoteSupervisor(url, history, token=TOKEN, deadline_s=deadline_s, backoff=backoff, model_name="m")


async def test_retries_503_then_429_with_retry_after_then_succeeds(
    upstream: Callable[..., Awaitable[Upstream]], history: CallHistory
) -> None:
    stand_in = await upstream(status(503), status(429, **{"Retry-After": "0.4"}), decision_reply())
    remote = client(stand_in.url, history)
    try:
        with capture_logs() as logs:
            decision = await remote.decide("CAr1", "Can I return a used tent?", user_item_id="item_1")
    finally:
        await remote.aclose()
    assert decision.outcome == "ok" and decision.policy_labels() == ["returns@3"]
    assert decision.user_item_id == "item_1"
    assert len(stand_in.requests) == 3
    assert all(auth == f"Bearer {TOKEN}" for _, auth, _ in stand_in.requests)
    retries = [e for e in logs if e["event"] == "supervisor_client.retry"]
    assert [(e["status"], e["attempt"]) for e in retries] == [(503, 1), (429, 2)]
    assert all(e["call_id"] == "CAr1" for e in retries)
    assert 25 <= retries[0]["delay_ms"] <= 50  # backoff with jitter: half to all of base_s
    assert retries[1]["delay_ms"] >= 400  # Retry-After honoured ...
    assert stand_in.requests[2][0] - stand_in.requests[1][0] >= 0.39  # ... really waited
    # each try told the service the deadline left, shrinking
    deadlines = [float(body["deadline_s"]) for _, _, body in stand_in.requests]  # type: ignore[arg-type]
    assert deadlines[0] <= 3.0 and deadlines[0] > deadlines[1] > deadlines[2] > 0
    # one request id for every try of this decision: the service answers a retry, once
    request_ids = {body["request_id"] for _, _, body in stand_in.requests}
    assert len(request_ids) == 1 and str(request_ids.pop()).startswith("req_")
    # the service recorded its decision; the client recorded nothing of its own
    assert await history.get_decisions("CAr1") == []
    [done] = [e for e in logs if e["event"] == "supervisor_client.decision"]
    assert done["attempts"] == 3


async def test_always_500_falls_back_before_the_deadline_and_records_it(
    upstream: Callable[..., Awaitable[Upstream]], history: CallHistory
) -> None:
    stand_in = await upstream(status(500))
    remote = client(stand_in.url, history, deadline_s=1.5, attempts=50)
    started = time.monotonic()
    try:
        with capture_logs() as logs:
            decision = await remote.decide("CAr2", "Can I return a used tent?", user_item_id="item_2")
    finally:
        await remote.aclose()
    elapsed = time.monotonic() - started
    assert elapsed < 1.5  # stopped short of the deadline rather than sleeping into it
    assert len(stand_in.requests) >= 4  # kept retrying while there was time
    assert decision.outcome == "error" and decision.text == FALLBACK_TEXT
    assert decision.error is not None and "HTTP 500" in decision.error
    [stored] = await history.get_decisions("CAr2")
    assert stored.decision_id == decision.decision_id and stored.outcome == "error"
    assert stored.user_item_id == "item_2" and stored.text == FALLBACK_TEXT
    items = await history.get_items("CAr2")
    assert [(i.kind, i.status) for i in items] == [("decision", "failed")]
    [logged] = [e for e in logs if e["event"] == "supervisor.decision"]
    assert logged["decision_id"] == decision.decision_id and logged["outcome"] == "error"


@pytest.mark.parametrize("code", [400, 401, 403, 404, 422])
async def test_other_4xx_are_not_retried(
    upstream: Callable[..., Awaitable[Upstream]], history: CallHistory, code: int
) -> None:
    stand_in = await upstream(status(code), decision_reply())
    remote = client(stand_in.url, history)
    try:
        with capture_logs() as logs:
            decision = await remote.decide(f"CAr4{code}", "question")
    finally:
        await remote.aclose()
    assert len(stand_in.requests) == 1
    assert (
        decision.outcome == "error"
        and decision.text == FALLBACK_TEXT
        and f"HTTP {code}" in str(decision.error)
    )
    assert not [e for e in logs if e["event"] == "supervisor_client.retry"]
    assert [d.decision_id for d in await history.get_decisions(f"CAr4{code}")] == [decision.decision_id]


async def test_retry_after_beyond_the_deadline_falls_back_at_once(
    upstream: Callable[..., Awaitable[Upstream]], history: CallHistory
) -> None:
    stand_in = await upstream(status(429, **{"Retry-After": "30"}), decision_reply())
    remote = client(stand_in.url, history, deadline_s=3.0)
    started = time.monotonic()
    try:
        decision = await remote.decide("CAr5", "question")
    finally:
        await remote.aclose()
    assert time.monotonic() - started < 1.0
    assert len(stand_in.requests) == 1 and decision.outcome == "error" and "HTTP 429" in str(decision.error)


async def test_connection_refused_is_retried_then_recorded(history: CallHistory) -> None:
    remote = client(f"http://127.0.0.1:{unused_port()}", history, deadline_s=2.0, attempts=3)
    try:
        with capture_logs() as logs:
            decision = await remote.decide("CAr6", "question")
    finally:
        await remote.aclose()
    retries = [e for e in logs if e["event"] == "supervisor_client.retry"]
    assert [(e["status"], e["attempt"]) for e in retries] == [(None, 1), (None, 2)]
    assert decision.outcome == "error" and "after 3 attempt(s)" in str(decision.error)
    assert [d.decision_id for d in await history.get_decisions("CAr6")] == [decision.decision_id]


async def test_a_hung_service_times_out_at_the_deadline(
    upstream: Callable[..., Awaitable[Upstream]], history: CallHistory
) -> None:
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        raise AssertionError("unreachable")

    stand_in = await upstream(hang)
    remote = client(stand_in.url, history, deadline_s=0.8)
    started = time.monotonic()
    try:
        decision = await remote.decide("CAr7", "question")
    finally:
        await remote.aclose()
    assert 0.75 <= time.monotonic() - started < 1.5
    assert decision.outcome == "timeout" and decision.text == FALLBACK_TEXT
    assert [d.outcome for d in await history.get_decisions("CAr7")] == ["timeout"]


async def test_unreadable_200_is_a_recorded_fallback(
    upstream: Callable[..., Awaitable[Upstream]], history: CallHistory
) -> None:
    async def garbage(request: web.Request) -> web.Response:
        return web.Response(text='{"not": "a decision"}', content_type="application/json")

    stand_in = await upstream(garbage)
    remote = client(stand_in.url, history)
    try:
        decision = await remote.decide("CAr8", "question")
    finally:
        await remote.aclose()
    assert len(stand_in.requests) == 1
    assert decision.outcome == "error" and "unreadable decision" in str(decision.error)
    assert [d.decision_id for d in await history.get_decisions("CAr8")] == [decision.decision_id]


@pytest.mark.parametrize("url", ["supervisor:8081", "responder-supervisor", "ftp://host/x", "http://"])
def test_a_malformed_url_fails_at_startup_not_on_every_call(url: str, history: CallHistory) -> None:
    with pytest.raises(ValueError, match="RESPONDER_SUPERVISOR_URL"):
        RemoteSupervisor(url, history, token=TOKEN, deadline_s=1.0)


def test_an_empty_token_sends_no_authorization_header(history: CallHistory) -> None:
    settings = Settings(supervisor_url="http://127.0.0.1:8081", supervisor_token="")  # type: ignore[arg-type]
    with capture_logs() as logs:
        remote = RemoteSupervisor.from_settings(settings, history)
    assert remote._headers == {}
    assert [e["event"] for e in logs] == ["supervisor_client.no_token"]


async def test_a_long_configured_deadline_is_sent_within_the_services_limit(
    upstream: Callable[..., Awaitable[Upstream]], history: CallHistory
) -> None:
    stand_in = await upstream(decision_reply())
    remote = client(stand_in.url, history, deadline_s=900.0)
    try:
        decision = await remote.decide("CAr9", "question")
    finally:
        await remote.aclose()
    assert decision.outcome == "ok"  # not a 400 for deadline_s > 600 on every decision
    [(_, _, body)] = stand_in.requests
    assert 590 < float(body["deadline_s"]) <= 600  # type: ignore[arg-type]
