"""The audio hot path's shortcuts and the startup warm-up (issue 6): each shortcut must give
exactly what the general path gives, or step aside."""

from __future__ import annotations

import base64
import gc
import json
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from responder.engines.realtime.connection import make_client, open_realtime
from responder.engines.realtime.engine import _audio, _audio_fast
from responder.engines.realtime.event_shape import shape_problem
from responder.engines.realtime.model_socket import ModelSocket
from responder.server.warmup import freeze_heap, warm_up_sdk, warm_up_text_model
from responder.transports.twilio.frames import _MARK_FRAME, _MEDIA_FRAME, mark_name, media_payload
from simulator.app import create_simulator_app
from simulator.probe import (
    ProbeRecorder,
    read_stamp,
    stamp,
    stamped_audio,
)
from simulator.scenario import load_scenario
from simulator.state import STATE_KEY
from tests.support.regex import repeats

PAYLOAD = base64.b64encode(bytes(range(160))).decode()
SID = "MZ" + "0123456789abcdef" * 2


def twilio_frame(payload: str = PAYLOAD, **overrides: Any) -> dict[str, Any]:
    media = {"track": "inbound", "chunk": "2", "timestamp": "40", "payload": payload}
    return {"event": "media", "sequenceNumber": "3", "media": media, "streamSid": SID, **overrides}


# -- Twilio media frames without json.loads -------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        json.dumps(twilio_frame(), separators=(",", ":")),  # Twilio's own
        json.dumps(twilio_frame()),  # spaces after , and :
        json.dumps(
            {"event": "media", "sequenceNumber": "3", "streamSid": SID, "media": twilio_frame()["media"]}
        ),  # the simulated caller's order
        json.dumps(twilio_frame(), indent=2),  # newlines and indentation are JSON whitespace too
    ],
)
def test_media_fast_path_reads_well_formed_frames(text: str) -> None:
    assert media_payload(text) == json.loads(text)["media"]["payload"] == PAYLOAD


@pytest.mark.parametrize(
    "text",
    [
        # valid JSON whose meaning differs from the shape: the general parser decides
        '{"event":"media","event":"stop","sequenceNumber":"3","media":{"track":"inbound","chunk":"2",'
        '"timestamp":"40","payload":"AAAA"}}',
        json.dumps(twilio_frame(extra="x"), separators=(",", ":")),
        json.dumps(twilio_frame(), separators=(",", ":")).replace(PAYLOAD[:4], "\\u0041" + PAYLOAD[1:4]),
        json.dumps({**twilio_frame(), "media": {**twilio_frame()["media"], "payload": 5}}),
        # not JSON at all
        json.dumps(twilio_frame(), separators=(",", ":"))[:-1],
        json.dumps(twilio_frame(), separators=(",", ":")) + "x",
        "",
    ],
)
def test_media_fast_path_steps_aside(text: str) -> None:
    assert media_payload(text) is None


_keys = st.sampled_from(["event", "sequenceNumber", "media", "streamSid", "payload", "track", "x"])
_values: st.SearchStrategy[Any] = st.recursive(
    st.one_of(st.sampled_from(["media", "AAAA", PAYLOAD, "3", ""]), st.integers(), st.none()),
    lambda inner: st.dictionaries(_keys, inner, max_size=5),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(frame=st.dictionaries(_keys, _values, max_size=6), compact=st.booleans())
def test_media_fast_path_never_disagrees_with_json(frame: dict[str, Any], compact: bool) -> None:
    text = json.dumps(frame, separators=(",", ":") if compact else (", ", ": "))
    payload = media_payload(text)
    if payload is not None:
        parsed = json.loads(text)
        assert parsed["event"] == "media" and parsed["media"]["payload"] == payload


# -- the echoes of our marks without json.loads ----------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        # Twilio's own (docs: event, sequenceNumber, streamSid, mark)
        '{"event":"mark","sequenceNumber":"4","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0",'
        '"mark":{"name":"m12"}}',
        '{"event": "mark", "streamSid": "MZ1", "mark": {"name": "m12"}}',  # the simulated caller
        '{"event":"mark","mark":{"name":"m12"},"streamSid":"MZ1"}',
    ],
)
def test_mark_fast_path_reads_our_marks_echoes(text: str) -> None:
    assert mark_name(text) == json.loads(text)["mark"]["name"] == "m12"


@pytest.mark.parametrize(
    "text",
    [
        '{"event":"mark","streamSid":"MZ1","mark":{"name":"tail"}}',  # not one of our names
        '{"event":"mark","streamSid":"MZ1","mark":{"name":"m1234567890123"}}',  # longer than ours
        '{"event":"mark","streamSid":"MZ1","mark":{"name":"\\u006d1"}}',  # an escape: json decides
        '{"event":"mark","streamSid":"MZ1","mark":{"name":"m1","x":1}}',
        '{"event":"mark","streamSid":"MZ1","mark":{"name":"m1"},"event":"stop"}',
        '{"event":"mark","streamSid":"MZ1","mark":{"name":"m1"}',  # not JSON
        '{"event":"mark","streamSid":"MZ1","mark":{"name":"m1"}}x',
        '{"event":"media","streamSid":"MZ1","mark":{"name":"m1"}}',
        '{"event":"mark","streamSid":"' + "M" * 600 + '","mark":{"name":"m1"}}',  # not ours: too long
        "",
    ],
)
def test_mark_fast_path_steps_aside(text: str) -> None:
    assert mark_name(text) is None


@settings(max_examples=300, deadline=None)
@given(
    frame=st.dictionaries(st.sampled_from(["event", "sequenceNumber", "streamSid", "mark", "name"]),
        st.recursive(st.sampled_from(["mark", "m1", "m22", "MZ1", "4", ""]) | st.integers(),
            lambda inner: st.dictionaries(st.sampled_from(["name", "mark", "x"]), inner, max_size=3),
            max_leaves=6),
        max_size=5),
    compact=st.booleans(),
)  # fmt: skip
def test_mark_fast_path_never_disagrees_with_json(frame: dict[str, Any], compact: bool) -> None:
    text = json.dumps(frame, separators=(",", ":") if compact else (", ", ": "))
    name = mark_name(text)
    if name is not None:
        parsed = json.loads(text)
        assert parsed["event"] == "mark" and parsed["mark"] == {"name": name}


def test_mark_fast_path_never_backtracks() -> None:
    assert repeats(_MARK_FRAME.pattern) == {"POSSESSIVE_REPEAT"}


# -- caller audio straight to the websockets connection ------------------------------------------
async def test_audio_appends_bypass_the_sdk_queue_only_while_it_is_idle() -> None:
    sim = TestServer(create_simulator_app(load_scenario("returns")))
    await sim.start_server()
    client = make_client("sk-test", str(sim.make_url("/v1")), None)
    try:
        async with open_realtime(client, "CAhotpath", model="gpt-realtime") as rt:
            direct = rt._direct
            assert direct is not None, "the SDK's connection internals changed: appends use send_raw"
            assert direct.idle()
            assert direct._ws is not None, "websockets' internals changed: appends await send()"
            assert isinstance(direct._lean, ModelSocket), "the SDK did not take our connection class"
            await rt.append_audio(base64.b64encode(b"\xff" * 160).decode())
            direct._ws.paused = True  # its buffer over the high-water mark: send() waits for it
            assert not direct.write_now("{}")
            direct._ws.paused = False
            assert direct.write_now('{"type":"input_audio_buffer.append","audio":"AAAA"}')
            assert direct._lock_free, "the SDK's send queue changed: idle() takes its lock"
            rt._conn._send_queue.enqueue("{}")  # what the SDK holds back while it reconnects
            assert not direct.idle()
            assert not rt.append_audio_now("AAAA")  # must wait behind it: nothing written
            rt._conn._send_queue.drain()
            assert direct.idle()
            assert rt.append_audio_now("AAAA")  # written at once, no coroutine
            # reading straight from the socket only while the SDK has nothing to account
            assert direct.readable_now() is direct._lean
            rt._conn._reconnect_attempt = 1
            assert direct.readable_now() is None
            rt._conn._reconnect_attempt = 0
            await rt.send({"type": "input_audio_buffer.clear"})
            async for event in rt.events():
                if event.get("type") in ("input_audio_buffer.cleared", "error"):
                    break
        state = sim.app[STATE_KEY]
        assert state.client_events.count({"type": "input_audio_buffer.append"}) == 3
        assert state.invalid_events == []  # the direct append is a valid client event
    finally:
        await client.close()
        await sim.close()


# -- startup warm-up ------------------------------------------------------------------------------
async def test_warm_up_builds_the_sdk_paths_without_warnings() -> None:
    client = make_client("sk-test", "http://127.0.0.1:9/v1", None)  # never contacted
    try:
        with structlog.testing.capture_logs() as logs:
            parts = warm_up_sdk(client)
            text_ms = [await warm_up_text_model(api) for api in ("responses", "chat")]
    finally:
        await client.close()
    assert set(parts) == {"realtime", "webhooks"}
    assert all(ms >= 0 for ms in [*parts.values(), *text_ms])
    assert [e for e in logs if e["log_level"] != "debug"] == []


def test_freeze_heap_moves_startup_objects_out_of_collections() -> None:
    try:
        frozen = freeze_heap()
        assert frozen == gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()


# -- probe stamps (load measurements) --------------------------------------------------------------
def test_probe_stamp_round_trip_and_window() -> None:
    audio, sent = stamped_audio(7, 42, 160)
    assert len(base64.b64decode(audio)) == 160
    assert read_stamp(audio) == (7, 42, sent)
    assert read_stamp(base64.b64encode(b"\xff" * 160).decode()) is None  # unstamped audio
    assert read_stamp("not base64!") is None
    assert read_stamp(base64.b64encode(stamp(1, 2, 3.0)).decode()) == (1, 2, 3.0)

    recorder = ProbeRecorder()
    times = recorder.of(7)
    for sent_at, ms in ((1.0, 0.5), (2.0, 1.5), (3.0, 9.0)):
        times.in_sent.append(sent_at)
        times.in_latency_ms.append(ms)
    times.out_sent.extend([1.5, 2.5, 5.0])
    times.barge_ins.append(2.2)
    times.truncations.extend([(1.0, 5.0), (2.3, 1480.0)])
    report = recorder.report(1.5, 3.0)
    assert report["calls"]["7"] == {
        "in_received": 2, "out_sent": 2, "barge_ins": [2.2], "truncations": [(2.3, 1480.0)],
        "unmapped_truncations": 0,
    }  # fmt: skip
    assert report["in_latency_ms"]["n"] == 2 and report["in_latency_ms"]["max"] == 9.0


# -- model audio deltas without the general shape check --------------------------------------------
_field: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.sampled_from(["", "item_1", "resp_1", PAYLOAD]), st.integers(), st.booleans(),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.sampled_from(["a"]), st.integers(), max_size=1),
)  # fmt: skip


_omit = st.sets(st.sampled_from(["response_id", "delta"]))


@settings(max_examples=300, deadline=None)
@given(delta=_field, item_id=_field, response_id=_field, omit=_omit)
def test_audio_fast_path_gives_what_the_general_path_gives(
    delta: Any, item_id: Any, response_id: Any, omit: set[str]
) -> None:
    raw = {"type": "response.output_audio.delta", "delta": delta, "item_id": item_id}
    raw["response_id"] = response_id
    for key in omit:
        raw.pop(key)
    fast = _audio_fast(raw)
    if fast is not None:  # taken only where the general path accepts the event and says the same
        assert shape_problem(raw) is None
        assert fast == _audio(None, raw)  # type: ignore[arg-type]
    elif shape_problem(raw) is None:
        assert _audio(None, raw) is None  # type: ignore[arg-type]  # nothing to relay either way


def test_media_fast_path_never_backtracks() -> None:
    """Before: a media-shaped 64 KB frame broken at its last byte was backtracked through, one
    character at a time, by each of three alternatives (1.6 ms, ~35 times ``json.loads``; a
    client sending only those held the event loop ~40 ms late for every call). Every
    repetition is possessive now, so a refusal costs one pass, and the verdicts are the same."""
    assert repeats(_MEDIA_FRAME.pattern) == {"POSSESSIVE_REPEAT"}
    head = {"event": "media", "sequenceNumber": "1"}
    media = {"media": {"track": "inbound", "chunk": "1", "timestamp": "1", "payload": "A" * 64_000}}
    sid = {"streamSid": "MZ1"}
    for frame in ({**head, **media, **sid}, {**head, **sid, **media}, {**head, **media}):
        text = json.dumps(frame, separators=(",", ":"))
        assert media_payload(text) == "A" * 64_000
        for broken in (text[:-1] + "x", text[:-1], text.replace('A"', 'A="', 1)[:-1] + "x"):
            assert media_payload(broken) is None
