"""SIP webhook sender of the simulator, verified by the real ``openai`` SDK's ``webhooks.unwrap``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from openai import InvalidWebhookSignatureError
from openai.types.webhooks import RealtimeCallIncomingWebhookEvent

from simulator.scenario import Scenario, Turn
from simulator.sip import new_webhook_secret, send_incoming_call
from simulator.state import SimulatorState
from tests.support.simulator import sdk

SECRET = new_webhook_secret()


class Receiver:
    """A webhook endpoint that checks each delivery with the SDK, like the service does."""

    def __init__(self) -> None:
        self.events: list[RealtimeCallIncomingWebhookEvent] = []
        self.webhook_ids: list[str] = []
        self.refused = 0
        self.client = sdk("http://127.0.0.1:9")  # never called: unwrap is local

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        try:
            event = self.client.webhooks.unwrap(body, dict(request.headers), secret=SECRET)
        except InvalidWebhookSignatureError:
            self.refused += 1
            return web.json_response({"error": "bad signature"}, status=400)
        assert isinstance(event, RealtimeCallIncomingWebhookEvent)
        self.events.append(event)
        self.webhook_ids.append(request.headers["webhook-id"])
        return web.Response(status=200)


@pytest.fixture
async def receiver(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> tuple[Receiver, str]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/openai/webhook", rec.handle)
    server = await aiohttp_server(app)
    return rec, str(server.make_url("/openai/webhook"))


def sim_state() -> SimulatorState:
    return SimulatorState(
        scenario=Scenario(name="sip", caller_number="+15555550177", turns=[Turn(say="Hi.")])
    )


async def test_incoming_call_is_signed_and_registered(receiver: tuple[Receiver, Any]) -> None:
    rec, url = receiver
    state = sim_state()
    call_id = (await send_incoming_call(url, SECRET, state=state)).call_id
    assert call_id.startswith("rtc_")
    assert state.calls[call_id].status == "ringing" and state.calls[call_id].kind == "sip"
    [event] = rec.events
    assert event.type == "realtime.call.incoming" and event.object == "event"
    assert event.id.startswith("evt_") and event.data.call_id == call_id
    headers = {h.name: h.value for h in event.data.sip_headers}
    assert headers["From"].startswith("sip:+15555550177@")
    assert headers["To"].startswith("sip:+15555550100@")
    assert state.calls[call_id].sip_headers[0] == {"name": "From", "value": headers["From"]}


async def test_duplicate_delivery_keeps_the_webhook_id(receiver: tuple[Receiver, Any]) -> None:
    rec, url = receiver
    custom = [{"name": "From", "value": "sip:alice@example.com"}, {"name": "X-Account", "value": "42"}]
    delivery = await send_incoming_call(url, SECRET, call_id="rtc_fixed", sip_headers=custom, duplicate=3)
    assert delivery.statuses == [200, 200, 200]
    assert [e.data.call_id for e in rec.events] == ["rtc_fixed"] * 3
    assert len(set(rec.webhook_ids)) == 1 and len({e.id for e in rec.events}) == 1
    assert [h.model_dump() for h in rec.events[0].data.sip_headers] == custom


async def test_bad_signature_is_refused_by_the_sdk(receiver: tuple[Receiver, Any]) -> None:
    rec, url = receiver
    delivery = await send_incoming_call(url, SECRET, bad_signature=True)
    assert delivery.statuses == [400]
    assert rec.refused == 1 and rec.events == []


async def test_duplicate_must_be_positive() -> None:
    with pytest.raises(ValueError):
        await send_incoming_call("http://127.0.0.1:9/", SECRET, duplicate=0)
