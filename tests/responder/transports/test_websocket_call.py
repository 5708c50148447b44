"""Calls over the PCM16 WebSocket transport (``/calls/ws``), end to end.

A scripted client plays the browser (:class:`tests.support.websocket_calls.PcmClient`) and
takes its turns from a scenario. Everything between is real: the service, Redis, the openai
SDK and the simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from infra.settings import Settings
from responder.engines.realtime.session import PCM24K
from responder.transports import stream
from simulator import audio
from simulator.scenario import load_scenario
from tests.support.calls import assert_protocol_clean, conversation, ended_call_items
from tests.support.service import FAST_SPEED, RunningService
from tests.support.waits import wait_until
from tests.support.websocket_calls import CALLER, FRAME_MS, PcmClient, scenario_script, ws_call


async def test_websocket_call_answers_from_the_supervisor(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    scenario = load_scenario("returns")
    svc: RunningService = await start_service(
        make_settings(simulator_scenario="returns", simulator_speed=FAST_SPEED)
    )
    report = await ws_call(svc, scenario_script(scenario))

    assert report.first_message["type"] == "call" and report.call_id.startswith("ws_")
    # the browser that started the call may watch its live transcript, and only that call's
    assert report.first_message["view_token"] == svc.services.view_token(report.call_id)
    assert report.first_message["view_token"] != svc.services.view_token("ws_other")
    assert report.ended == {"type": "ended", "reason": "caller_stopped"}
    assert report.after_ended == 0
    items = await ended_call_items(svc, report.call_id)
    convo = conversation(items)
    assert convo[0] == ("assistant", scenario.greeting)
    assert ("user", scenario.turns[0].say) in convo
    q_index = convo.index(("user", scenario.turns[1].say))
    assert convo[q_index + 1] == ("assistant", scenario.turns[1].filler)
    [decision] = await svc.services.history.get_decisions(report.call_id)
    assert decision.outcome == "ok" and "returns@3" in decision.policy_labels()
    assert convo[-1] == ("assistant", decision.text) and "60 days" in decision.text
    meta = await svc.services.history.get_meta(report.call_id)
    assert meta["transport"] == "websocket" and meta["caller"] == CALLER
    # the Realtime session speaks PCM16 24 kHz both ways: no resampling anywhere
    state = svc.services.simulator.state
    [update, *_] = [e for e in state.client_events if e["type"] == "session.update"]
    assert update["session"]["audio"]["input"]["format"] == PCM24K
    assert update["session"]["audio"]["output"]["format"] == PCM24K
    assert report.marks_echoed > 0 and report.clears == 0
    assert_protocol_clean(svc)


async def test_websocket_barge_in_truncates_at_the_played_position(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    scenario = load_scenario("barge_in")
    svc: RunningService = await start_service(make_settings(simulator_scenario="barge_in"))
    report = await ws_call(svc, scenario_script(scenario))

    assert report.clears >= 1
    items = await ended_call_items(svc, report.call_id)
    state = svc.services.simulator.state
    [truncate] = [e for e in state.client_events if e["type"] == "conversation.item.truncate"]
    [item] = [i for i in items if i.status == "interrupted"]
    assert item.id == truncate["item_id"] and item.audio_end_ms == truncate["audio_end_ms"]
    # The client stopped listening 1200 ms into the answer (see the scenario). Counting PCM16
    # at 48 bytes/ms from the played marks lands at or a little past that; counting it as
    # μ-law (8 bytes/ms) would say six times as much, everything sent would say seconds.
    assert 1200 <= item.audio_end_ms <= 1800
    assert item.full_text and item.text and item.full_text.startswith(item.text)
    assert len(item.text) < len(item.full_text)
    assert conversation(items)[-1] == ("assistant", scenario.turns[-1].reply)
    assert_protocol_clean(svc)


async def test_bad_frames_are_logged_and_skipped(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc: RunningService = await start_service(make_settings(greeting=False))
    bad_text = [
        "{not json",
        '["type"]',
        '{"type": 7}',
        '{"type":"mark","name":7}',
        '{"type":"mark","name":"has spaces and \\"quotes\\""}',
        '{"type":"dtmf","digit":"x"}',
        '{"type":"start","caller":"late"}',
    ]

    async def script(client: PcmClient) -> None:
        await client.ws.send_bytes(audio.silence(FRAME_MS, "pcm16"))  # first frame: no caller label
        state = svc.services.simulator.state  # the call's controller is up once its session is asked for
        await wait_until(lambda: any(e["type"] == "session.update" for e in state.client_events), 5)
        for text in bad_text:
            await client.ws.send_str(text)
        await client.ws.send_str('{"type":"teleport"}')
        await client.ws.send_bytes(b"\x01\x02\x03")
        await client.send_json({"type": "dtmf", "digit": "5"})
        await client.send_json({"type": "stop"})
        await wait_until(client.closed.is_set, 10)

    with capture_logs() as logs:
        report = await ws_call(svc, script, caller=None)
    events = [e["event"] for e in logs]
    assert events.count("websocket.frame_invalid") == len(bad_text) + 1  # + the odd-length audio
    assert events.count("websocket.event_ignored") == 1
    assert report.ended == {"type": "ended", "reason": "caller_stopped"}
    items = await ended_call_items(svc, report.call_id)
    assert [i.text for i in items if i.kind == "dtmf"] == ["5"]
    meta = await svc.services.history.get_meta(report.call_id)
    assert meta["transport"] == "websocket" and meta["caller"] == ""
    state = svc.services.simulator.state
    assert state.invalid_events == [] and state.errors_sent == []


async def test_oversize_frame_and_silent_socket_are_closed(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings], monkeypatch: Any
) -> None:
    monkeypatch.setattr(stream, "START_TIMEOUT_S", 0.3)
    svc: RunningService = await start_service(make_settings())
    url = svc.url.replace("http", "ws", 1) + "/calls/ws"
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(url) as ws:
            msg = await ws.receive(timeout=5)  # nothing sent: closed for want of a start
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert ws.close_code == 1008
        async with http.ws_connect(url) as ws:
            await ws.send_bytes(bytes(stream.MAX_FRAME_BYTES + 2))
            msg = await ws.receive(timeout=5)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert ws.close_code == 1009  # message too big


async def test_a_call_whose_client_goes_quiet_is_closed_and_its_slot_freed(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    """Before: a client that sent ``start`` and then nothing kept its call (and the model
    session) open for good, the WebSocket ping answered by its library, so a few such clients
    filled the call cap and phone callers were told every line was busy. Now a call socket with
    no frame for RESPONDER_STREAM_IDLE_S is closed and its call ended; one that streams is not."""
    svc: RunningService = await start_service(make_settings(stream_idle_s=0.8))
    url = svc.url.replace("http", "ws", 1) + "/calls/ws"
    silence = bytes(FRAME_MS * 48)  # one frame of PCM16 silence at 24 kHz
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(url) as quiet, http.ws_connect(url) as talking:
            for ws in (quiet, talking):
                await ws.send_json({"type": "start", "caller": "browser"})
            await wait_until(lambda: svc.services.admission.active_total == 2, 10.0, what="both admitted")
            loop = asyncio.get_running_loop()
            until = loop.time() + 2.5
            said: list[Any] = []
            while loop.time() < until and not quiet.closed:
                await talking.send_bytes(silence)
                with contextlib.suppress(TimeoutError):
                    msg = await quiet.receive(timeout=FRAME_MS / 1000)  # its audio, marks, close
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        said.append(msg.json())
            assert quiet.closed and quiet.close_code == 1001
            assert said[-1] == {"type": "ended", "reason": "caller_idle"}  # the last frame, as ever
            assert not talking.closed
            await wait_until(lambda: svc.services.admission.active_total == 1, 10.0, what="the slot freed")
    quiet_id = said[0]["call_id"]
    assert (await svc.services.history.get_meta(quiet_id))["end_reason"] == "caller_idle"


async def test_realtime_unreachable_ends_the_websocket_call_with_a_reason(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    from aiohttp.test_utils import unused_port

    dead = f"http://127.0.0.1:{unused_port()}/v1"
    settings = make_settings(openai_api_key="sk-test-unused", openai_base_url=dead)
    svc: RunningService = await start_service(settings)

    async def script(client: PcmClient) -> None:
        await wait_until(client.closed.is_set, 10)

    report = await ws_call(svc, script)
    assert report.call_id.startswith("ws_")
    assert report.ended == {"type": "ended", "reason": "realtime_failed"}
    assert (await svc.services.history.get_meta(report.call_id))["status"] == "failed"


async def test_calls_past_the_cap_are_refused_before_the_upgrade(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc: RunningService = await start_service(make_settings(max_concurrent_calls=1, greeting=False))
    url = svc.url.replace("http", "ws", 1) + "/calls/ws"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as first:
        await first.send_json({"type": "start"})
        assert (await first.receive_json(timeout=5))["type"] == "call"
        async with http.get(url, headers={"Connection": "Upgrade", "Upgrade": "websocket"}) as resp:
            assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
        await first.send_json({"type": "stop"})
        assert (await first.receive_json(timeout=5)) == {"type": "ended", "reason": "caller_stopped"}
    # the slot is free again once the first call is over
    await wait_until(lambda: not svc.services.admission.active_total, 5, 0.05)
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as again:
        await again.send_bytes(audio.silence(FRAME_MS, "pcm16"))
        assert (await again.receive_json(timeout=5))["type"] == "call"


async def test_another_sites_page_cannot_open_a_call(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc: RunningService = await start_service(make_settings(greeting=False))
    url = svc.url.replace("http", "ws", 1) + "/calls/ws"
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url, origin="https://evil.example")
        assert refused.value.status == 403
        async with http.ws_connect(url, origin=svc.url) as own_page:  # the service's own page
            await own_page.send_json({"type": "start"})
            call = await own_page.receive_json(timeout=5)
            assert call["type"] == "call"
            await own_page.send_json({"type": "stop"})
    assert await svc.services.history.recent_calls() == [call["call_id"]]  # the refused one left no trace


async def test_key_presses_right_after_start_are_recorded_in_order(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    """Issue 14, item 6: key presses sent right after ``start``, while the call's session was
    still being set up, were neither recorded nor logged. Now they are kept and recorded, in
    order, before the presses that come later."""
    svc: RunningService = await start_service(make_settings())

    async def script(client: PcmClient) -> None:
        for digit in "123":  # at once: the session is not up yet
            await client.send_json({"type": "dtmf", "digit": digit})
        await wait_until(lambda: client.playback.received_ms > 0, 10, what="the greeting")
        await client.send_json({"type": "dtmf", "digit": "4"})
        await client.send_json({"type": "stop"})
        await wait_until(client.closed.is_set, 10)

    with capture_logs() as logs:
        report = await ws_call(svc, script)
    items = await ended_call_items(svc, report.call_id)
    assert [i.text for i in items if i.kind == "dtmf"] == ["1", "2", "3", "4"]
    assert [e["digit"] for e in logs if e["event"] == "call.dtmf"] == ["1", "2", "3", "4"]


async def test_key_presses_of_a_call_stopped_before_its_session_came_up_are_recorded(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    """Issue 14, item 6: a caller who presses keys and stops at once, before the session is up."""
    svc: RunningService = await start_service(make_settings())
    url = svc.url.replace("http", "ws", 1) + "/calls/ws"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.send_json({"type": "start", "caller": CALLER})
        for digit in "0815":
            await ws.send_json({"type": "dtmf", "digit": digit})
        await ws.send_json({"type": "stop"})
        call_id = ""
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT and (frame := msg.json()).get("type") == "call":
                call_id = frame["call_id"]
    items = await ended_call_items(svc, call_id)
    assert [i.text for i in items if i.kind == "dtmf"] == list("0815")
