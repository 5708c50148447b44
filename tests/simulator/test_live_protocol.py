"""The GPT-Live WebSocket double's protocol: connecting, session.start, validation, the real
server's semantic errors and session.close — driven through the real ``openai`` SDK."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from simulator.live_protocol import CHARS_PER_TOKEN, MAX_APPEND_TOKENS
from simulator.scenario import Scenario, Turn
from tests.support.live import PCM24, PCMU, LiveClient, OpenLive, live_session, live_sims

SCENARIO = Scenario(name="live-protocol", turns=[Turn(say="Hello?", reply="Hi!")])


@pytest.fixture
async def open_live(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> AsyncIterator[OpenLive]:
    async with live_sims(aiohttp_server) as open_sim:
        yield open_sim


async def error_for(client: LiveClient, event: dict) -> dict:
    """Send ``event`` (with an event_id) and return the ``error`` it gets."""
    event_id = f"evt_{time.monotonic_ns()}"
    await client.send({**event, "event_id": event_id})
    error = await client.until("error", 3, where=lambda e: e["error"]["client_event_id"] == event_id)
    assert error["client_event_id"] == event_id
    assert error["error"]["type"] == "invalid_request_error"
    return error["error"]


async def test_connect_needs_bearer_auth_and_no_query(open_live: OpenLive) -> None:
    sim = await open_live(SCENARIO)
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(sim.server.make_url("/v1/live/sessions"))
        assert info.value.status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            url = sim.server.make_url("/v1/live/sessions?model=gpt-live-1.1")
            await http.ws_connect(url, headers={"Authorization": "Bearer x"})
        assert info.value.status == 400
    assert sim.state.live_sessions == []


async def test_session_start_resolves_the_defaults(open_live: OpenLive) -> None:
    sim = await open_live(SCENARIO)
    client = await sim.connect()
    await client.conn.session.start(session={"model": "gpt-live-1.1"}, event_id="evt_start")
    started = await client.until("session.started")
    session = started["session"]
    assert started["client_event_id"] == "evt_start"
    assert session["id"].startswith("live_") and session["id"] == sim.session.id
    assert session["status"] == "active" and session["expires_at"] > time.time() + 3600
    assert session["model"] == "gpt-live-1.1"
    assert session["audio"] == {"format": PCM24, "output": {"voice": "marin"}}
    assert session["delegation"] == {"type": "client", "acknowledgement_delay_ms": 0}
    assert sim.session.started and sim.session.config == session
    assert [e["type"] for e in sim.state.live_client_events] == ["session.start"]


async def test_commands_before_start_and_a_second_start_are_refused(open_live: OpenLive) -> None:
    sim = await open_live(SCENARIO)
    client = await sim.connect()
    commentary = {"type": "session.commentary.append", "content": "Hi.", "delegation_id": None}
    assert (await error_for(client, commentary))["code"] == "session_not_started"
    silence = base64.b64encode(bytes(480)).decode()
    append = {"type": "session.input_audio.append", "audio": silence}
    assert (await error_for(client, append))["code"] == "session_not_started"
    await client.start(live_session(PCM24), stream=False)
    second = {"type": "session.start", "session": live_session()}
    assert (await error_for(client, second))["code"] == "session_already_started"
    assert [e["type"] for e in sim.state.live_refused_events] == [
        "session.commentary.append",
        "session.input_audio.append",
        "session.start",
    ]
    assert sim.state.live_invalid_events == []
    await client.send(append)  # accepted now
    await client.conn.session.close()
    await client.until("session.closed")


async def test_invalid_events_are_answered_with_errors(open_live: OpenLive) -> None:
    sim = await open_live(SCENARIO)
    client = await sim.connect()
    cases: list[tuple[dict, str, str | None]] = [
        ({"type": "session.start", "session": {"model": "m", "foo": 1}}, "unknown_parameter", "session.foo"),
        (
            {"type": "session.start", "session": {"model": "m", "audio": {"format": {**PCMU, "bitrate": 1}}}},
            "unknown_parameter",
            "session.audio.format.bitrate",
        ),
        (
            {"type": "session.start", "session": {"instructions": "x"}},
            "missing_required_parameter",
            "session.model",
        ),
        ({"type": "response.audio.delta"}, "invalid_value", "type"),
        ({"type": "transport.dtmf.send", "event": "1"}, "invalid_value", "type"),  # sideband only
        (
            {"type": "session.commentary.append", "content": "x"},
            "missing_required_parameter",
            "delegation_id",
        ),
    ]
    for event, code, param in cases:
        error = await error_for(client, event)
        assert (error["code"], error["param"]) == (code, param), event
    await client.conn.send_raw("{not json")
    assert (await client.until("error"))["error"]["code"] == "invalid_json"
    assert len(sim.state.live_invalid_events) == len(cases) + 1
    assert sim.state.live_invalid_events[-1]["raw"] == "{not json"
    assert not sim.state.live_refused_events
    await client.start()  # the connection survived all of it


async def test_session_update_changes_delegation_settings_only(open_live: OpenLive) -> None:
    sim = await open_live(SCENARIO)
    client = await sim.connect()
    await client.start(stream=False)
    for field, value in [("instructions", "Be brief."), ("audio", {"output": {"voice": "cedar"}})]:
        error = await error_for(client, {"type": "session.update", "session": {field: value}})
        assert (error["code"], error["param"]) == ("invalid_value", f"session.{field}")
    responses = {"type": "responses", "responses": {"model": "gpt-5"}}
    error = await error_for(client, {"type": "session.update", "session": {"delegation": responses}})
    assert (error["code"], error["param"]) == ("invalid_value", "session.delegation.type")
    await client.conn.session.update(
        session={"delegation": {"type": "client", "acknowledgement_delay_ms": 700}, "triggers": []}
    )
    updated = (await client.until("session.updated"))["session"]
    assert updated["delegation"] == {"type": "client", "acknowledgement_delay_ms": 700}
    assert updated["triggers"] == [] and updated["instructions"] == "You are Robin."
    assert sim.session.config == updated


async def test_wrong_audio_formats_are_refused(open_live: OpenLive) -> None:
    sim = await open_live(SCENARIO)
    client = await sim.connect()
    error = await error_for(
        client, {"type": "session.start", "session": live_session({"type": "audio/pcmu", "rate": 16000})}
    )
    assert (error["code"], error["param"]) == ("invalid_value", "session.audio.format.rate")
    error = await error_for(
        client, {"type": "session.start", "session": live_session({"type": "audio/pcm", "rate": 8000})}
    )
    assert (error["code"], error["param"]) == ("invalid_value", "session.audio.format.rate")
    await client.start(live_session({"type": "audio/pcm", "rate": 16000}), stream=False)
    odd = base64.b64encode(bytes(321)).decode()
    error = await error_for(client, {"type": "session.input_audio.append", "audio": odd})
    assert (error["code"], error["param"]) == ("invalid_value", "audio")
    error = await error_for(client, {"type": "session.input_audio.append", "audio": "***"})
    assert (error["code"], error["param"]) == ("invalid_value", "audio")
    await client.send({"type": "session.input_audio.append", "audio": base64.b64encode(bytes(320)).decode()})
    await client.conn.session.close()
    await client.until("session.closed")
    assert sim.session.timeline_ms == 10.0  # 320 bytes of 16 kHz PCM16


async def test_append_errors(open_live: OpenLive) -> None:
    sim = await open_live(SCENARIO)
    client = await sim.connect()
    await client.start()
    for kind in ("commentary", "thinking", "instructions"):
        event = {"type": f"session.{kind}.append", "content": "Yes.", "delegation_id": "dlg_unknown"}
        error = await error_for(client, event)
        assert (error["code"], error["param"]) == ("invalid_value", "delegation_id")
    limit = MAX_APPEND_TOKENS * CHARS_PER_TOKEN  # tokens estimated as ceil(len / 4)
    too_long = {"type": "session.thinking.append", "content": "x" * (limit + 1), "delegation_id": None}
    error = await error_for(client, too_long)
    assert (error["code"], error["param"]) == ("invalid_value", "content")
    await client.conn.session.thinking.append(content="x" * limit, delegation_id=None)
    appended = await client.until("session.thinking.appended")
    assert appended["end_ms"] > appended["start_ms"] >= 0
    for event in ({"type": "response.create"}, {"type": "decision.create", "event_id": "d1"}):
        assert (await error_for(client, event))["code"] == "delegation_mode_mismatch"
    assert len(sim.state.live_refused_events) == 6 and not sim.state.live_invalid_events


async def test_close_reports_unplaced_appends_and_closes(open_live: OpenLive) -> None:
    sim = await open_live(SCENARIO, live_usage_interval_s=0.5)
    client = await sim.connect()
    await client.start()
    usage = await client.until("session.usage.updated", 3)
    assert usage["usage"]["seconds"] > 0
    await client.stop_streaming()  # the timeline stops with the input
    await client.conn.session.commentary.append(content="Anything else?", delegation_id=None, event_id="c1")
    await client.conn.session.close(event_id="bye")
    error = (await client.until("error"))["error"]
    assert (error["code"], error["client_event_id"]) == ("context_injection_incomplete", "c1")
    closed = await client.until("session.closed")
    assert closed["reason"] == "close_requested" and closed["client_event_id"] == "bye"
    assert closed["session"]["id"] == sim.session.id
    assert closed["usage"]["seconds"] == pytest.approx(sim.session.timeline_ms / 1000, abs=0.001)
    await client.until_closed()
    assert sim.session.closed_reason == "close_requested"
    assert [e["code"] for e in sim.state.live_errors_sent] == ["context_injection_incomplete"]
