"""Realtime calls REST double (WebRTC create, SIP call control) through the real ``openai`` SDK."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
import openai
import pytest
from aiohttp.test_utils import TestServer

from simulator.scenario import Scenario, Turn
from simulator.sdp import parse_offer
from simulator.state import STATE_KEY, SimulatorState
from tests.support.simulator import OFFER, SESSION, sdk, simulator_app

SCENARIO = Scenario(name="calls", turns=[Turn(say="Hi there.", reply="Hello!")])


@pytest.fixture
async def server(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> TestServer:
    return await aiohttp_server(simulator_app(SCENARIO))


def url(server: TestServer) -> str:
    return str(server.make_url(""))


def state_of(server: TestServer) -> SimulatorState:
    return server.app[STATE_KEY]


async def test_create_returns_answer_sdp_and_location(server: TestServer) -> None:
    client = sdk(url(server))
    raw = await client.realtime.calls.with_raw_response.create(sdp=OFFER, session=SESSION)
    assert raw.status_code == 201
    assert raw.headers["content-type"].startswith("application/sdp")
    location = raw.headers["location"]
    assert location.startswith("/v1/realtime/calls/rtc_")
    call_id = location.rsplit("/", 1)[1]
    answer = raw.text
    sections = parse_offer(answer)  # the answer is SDP itself, matching the offer's sections
    assert [(s.kind, s.mid) for s in sections] == [("audio", "0"), ("application", "1")]
    assert sections[0].opus_pt == 111
    assert "a=setup:active" in answer and "a=ice-pwd:" in answer and "a=fingerprint:sha-256 " in answer
    call = state_of(server).calls[call_id]
    assert call.kind == "webrtc" and call.status == "active"
    assert call.session is not None and call.session["instructions"] == "You are Robin."
    assert state_of(server).call_actions == [(call_id, "create", {"sdp": OFFER, "session": SESSION})]


async def test_create_without_session_sends_bare_sdp(server: TestServer) -> None:
    raw = await sdk(url(server)).realtime.calls.with_raw_response.create(sdp=OFFER)
    call_id = raw.headers["location"].rsplit("/", 1)[1]
    assert raw.status_code == 201
    assert state_of(server).calls[call_id].session is None


async def test_create_rejects_bad_offer_bad_session_and_missing_key(server: TestServer) -> None:
    client = sdk(url(server))
    with pytest.raises(openai.BadRequestError) as bad_sdp:
        await client.realtime.calls.create(sdp="hello, not sdp", session=SESSION)
    assert bad_sdp.value.body["param"] == "sdp"  # type: ignore[index]
    bad_session = {**SESSION, "output_modalities": ["smell"]}
    with pytest.raises(openai.BadRequestError) as invalid:
        await client.realtime.calls.create(sdp=OFFER, session=bad_session)  # type: ignore[arg-type]
    assert invalid.value.body["param"].startswith("session.output_modalities")  # type: ignore[index]
    assert invalid.value.body["code"] == "invalid_value"  # type: ignore[index]
    async with aiohttp.ClientSession() as http:
        form = aiohttp.FormData()
        form.add_field("sdp", OFFER, content_type="application/sdp")
        async with http.post(server.make_url("/v1/realtime/calls"), data=form) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"]["code"] == "invalid_api_key"
        headers = {"Authorization": "Bearer test"}
        async with http.post(server.make_url("/v1/realtime/calls"), json={}, headers=headers) as resp:
            assert resp.status == 400
        broken = {**headers, "Content-Type": "multipart/form-data; boundary=abc"}
        async with http.post(server.make_url("/v1/realtime/calls"), data=b"no parts", headers=broken) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["code"] == "invalid_multipart"
        huge = aiohttp.FormData()
        huge.add_field("sdp", "v=0\r\n" + "a=x\r\n" * 100_000, content_type="application/sdp")
        async with http.post(server.make_url("/v1/realtime/calls"), data=huge, headers=headers) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["param"] == "sdp"
    assert state_of(server).calls == {}


async def test_accept_then_refer_and_hangup(server: TestServer) -> None:
    state = state_of(server)
    client = sdk(url(server))
    call = state.add_call("sip")
    await client.realtime.calls.accept(call.id, **SESSION)  # type: ignore[arg-type]
    assert call.status == "active" and call.session is not None
    assert call.session["tools"][0]["name"] == SESSION["tools"][0]["name"]
    with pytest.raises(openai.BadRequestError) as bad_target:
        await client.realtime.calls.refer(call.id, target_uri="+15555550199")
    assert bad_target.value.body["param"] == "target_uri"  # type: ignore[index]
    await client.realtime.calls.refer(call.id, target_uri="tel:+15555550199")
    assert call.status == "referred" and call.ended.is_set()
    with pytest.raises(openai.NotFoundError):  # the call is over
        await client.realtime.calls.hangup(call.id)
    assert state.actions_for(call.id) == [
        ("accept", {**SESSION}),
        ("refer", {"target_uri": "tel:+15555550199"}),
    ]
    other = state.add_call("sip")
    await client.realtime.calls.accept(other.id, type="realtime", model="gpt-realtime")
    await client.realtime.calls.hangup(other.id)
    assert other.status == "hung_up"
    assert state.actions_for(other.id)[-1] == ("hangup", {})


async def test_accept_refuses_unknown_given_up_and_invalid(server: TestServer) -> None:
    state = state_of(server)
    client = sdk(url(server))
    with pytest.raises(openai.NotFoundError) as unknown:
        await client.realtime.calls.accept("rtc_nope", type="realtime")
    assert unknown.value.body["code"] == "call_not_found"  # type: ignore[index]
    gone = state.add_call("sip")
    state.caller_hangs_up(gone.id)
    with pytest.raises(openai.NotFoundError):
        await client.realtime.calls.accept(gone.id, type="realtime")
    ringing = state.add_call("sip")
    with pytest.raises(openai.BadRequestError) as invalid:
        await client.realtime.calls.accept(ringing.id, type="realtime", tool_choice=42)  # type: ignore[arg-type]
    assert invalid.value.body["param"].startswith("tool_choice")  # type: ignore[index]
    assert ringing.status == "ringing"
    assert state.call_actions == []


async def test_reject_with_and_without_status(server: TestServer) -> None:
    state = state_of(server)
    client = sdk(url(server))
    first, second = state.add_call("sip"), state.add_call("sip")
    await client.realtime.calls.reject(first.id)
    await client.realtime.calls.reject(second.id, status_code=486)
    assert first.status == second.status == "rejected"
    assert state.call_actions == [(first.id, "reject", {}), (second.id, "reject", {"status_code": 486})]
    third = state.add_call("sip")
    with pytest.raises(openai.BadRequestError):
        await client.realtime.calls.reject(third.id, status_code=200)
    assert third.status == "ringing"


async def test_call_actions_need_the_bearer_header(server: TestServer) -> None:
    call = state_of(server).add_call("sip")
    async with aiohttp.ClientSession() as http:
        for action in ("accept", "reject", "refer", "hangup"):
            async with http.post(server.make_url(f"/v1/realtime/calls/{call.id}/{action}"), json={}) as resp:
                assert resp.status == 401, action
        headers = {"Authorization": "Bearer test", "Content-Type": "application/json"}
        endpoint = server.make_url(f"/v1/realtime/calls/{call.id}/hangup")
        async with http.post(endpoint, data=b"{not json", headers=headers) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["code"] == "invalid_json"
    assert call.status == "ringing"
