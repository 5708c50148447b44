"""Graceful drain: new calls are refused politely, calls still live at the limit say a
goodbye line and are hung up, and the ending is recorded like an ``end_call``."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import aiohttp
from twilio.request_validator import RequestValidator

from infra.settings import Settings
from responder.core.actions import DRAIN_LINE, SERVICE_DRAINING
from responder.server.drain import drain
from responder.transports.twilio.transport import DRAINING_MESSAGE
from simulator.caller import place_call
from simulator.realtime_faults import SocketDrop
from simulator.scenario import load_scenario
from simulator.twilio_rest import TwilioRestStandIn
from tests.support.calls import VOICE_WEBHOOK_PARAMS, assert_protocol_clean, conversation, ended_call_items
from tests.support.service import AUTH_TOKEN, RunningService
from tests.support.waits import wait_until

ACCOUNT = "AC" + "0" * 32


async def _voice_webhook(svc: RunningService) -> ET.Element:
    url = svc.url + "/twilio/voice"
    params = {**VOICE_WEBHOOK_PARAMS, "AccountSid": ACCOUNT}
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=params, headers={"X-Twilio-Signature": signature}) as resp,
    ):
        assert resp.status == 200
        return ET.fromstring(await resp.text())


async def _drain_a_live_call(
    start_service: Callable[..., Any], settings: Settings, sid: str, drops: list[SocketDrop]
) -> RunningService:
    """A caller who stays on the line, silent after the greeting, when the instance drains."""
    async with TwilioRestStandIn(ACCOUNT, AUTH_TOKEN) as rest:
        twilio = {"twilio_account_sid": ACCOUNT, "twilio_api_base_url": rest.base_url}
        settings = settings.model_copy(update=twilio)
        svc: RunningService = await start_service(settings)
        services = svc.services
        services.simulator.state.socket_drops.extend(drops)
        ended = rest.register_call(sid)
        scenario = load_scenario("returns").model_copy(update={"quiet_ms": 60_000})
        placed = place_call(
            svc.url, scenario, auth_token=AUTH_TOKEN, speed=svc.speed, call_sid=sid,
            account_sid=ACCOUNT, ended=ended, timeout_s=60,
        )  # fmt: skip
        call = asyncio.create_task(placed)

        async def greeted() -> bool:
            items = await services.history.get_items(sid)
            return any(i.role == "assistant" and i.status == "completed" for i in items)

        await wait_until(greeted, 20, 0.05, what="the greeting recorded")
        loop = asyncio.get_running_loop()
        started = loop.time()
        drained = asyncio.create_task(drain(services, drain_s=5.0, goodbye_s=3.0))
        await asyncio.sleep(0.2)

        # while draining, a new caller is told politely and hung up; no stream is offered
        root = await _voice_webhook(svc)
        assert root.find("./Connect") is None
        say = root.find("./Say")
        assert say is not None and say.text == DRAINING_MESSAGE
        assert root.find("./Hangup") is not None
        async with aiohttp.ClientSession() as http, http.get(svc.url + "/readyz") as resp:
            assert resp.status == 503 and (await resp.json())["reason"] == "draining"

        said_goodbye = await drained
        elapsed = loop.time() - started
        report = await call
        statuses = [u.status for u in rest.updates]

    assert said_goodbye == 1
    assert elapsed < 5.0 + 0.5  # within the drain limit, not cut at shutdown
    assert statuses == ["completed"] and report.ended_by_rest == "completed"
    items = await ended_call_items(svc, sid)
    [action] = [i for i in items if i.kind == "action"]
    assert action.name == "end_call"
    assert action.meta["reason"] == SERVICE_DRAINING and action.meta["outcome"] == "done"
    assert [text for role, text in conversation(items) if role == "assistant"][-1] == DRAIN_LINE
    assert report.audio_ms_played > 0  # the line played out before the hang-up
    assert services.admission.active_total == 0
    assert_protocol_clean(svc)
    return svc


async def test_a_call_still_live_at_the_drain_limit_hears_goodbye_and_is_hung_up(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    await _drain_a_live_call(start_service, make_settings(), "CA" + "d" * 32, [])


async def test_the_goodbye_survives_a_realtime_reconnect(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    """The Realtime socket drops just as the goodbye is asked for (the 2nd response.create,
    after the greeting's): the new session is asked for the goodbye again."""
    drop = SocketDrop(after_event="response.create", client_event=True, nth=2)
    svc = await _drain_a_live_call(start_service, make_settings(), "CA" + "e" * 32, [drop])
    state = svc.services.simulator.state
    assert state.sockets_dropped == 1 and len(state.conversations) == 2


async def test_a_drain_with_no_calls_ends_at_once_and_says_nothing(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc: RunningService = await start_service(make_settings())
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await drain(svc.services, drain_s=10.0, goodbye_s=3.0) == 0
    assert loop.time() - started < 1.0
    assert svc.services.draining
