"""Twilio Media Stream frames into the real service over a real WebSocket.

Each example opens one media stream: fuzzed frames before ``start``, a signed ``start``,
fuzzed frames while the call runs, then a well-formed key press as a marker and a ``stop``.
The marker coming back as a recorded DTMF item proves the frame loop survived every frame
before it (frames are handled in order); the stop must end the call normally. Nothing may
be logged as ``twilio.frame_failed`` or as an unhandled exception, every frame the service
sends back must be JSON, and the simulator must have accepted every client event.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from typing import Any

import aiohttp
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from responder.transports.twilio.transport import stream_token
from tests.fuzz.strategies import json_values, maybe_drop, not_objects, text
from tests.support.fuzz import BAD_EVENTS, MAX_SENT, parse_json
from tests.support.loop_service import ErrorRecords, LoopService, shared_service
from tests.support.service import AUTH_TOKEN
from tests.support.waits import wait_until

FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
DIGITS = frozenset("0123456789*#ABCD")


@st.composite
def plausible_frame(draw: st.DrawFn, kinds: list[str]) -> dict[str, Any]:
    kind = draw(st.sampled_from(kinds))
    sid = draw(st.just("MZ" + "0" * 32) | text)
    frame: dict[str, Any] = {
        "event": kind,
        "sequenceNumber": draw(st.integers(0, 99).map(str)),
        "streamSid": sid,
    }
    if kind == "media":
        payload = st.binary(max_size=320).map(lambda b: base64.b64encode(b).decode()) | text | json_values
        media = {"track": "inbound", "chunk": "1", "timestamp": "20", "payload": draw(payload)}
        frame["media"] = maybe_drop(draw, media, ["payload", "track"])
    elif kind == "mark":
        frame["mark"] = maybe_drop(draw, {"name": draw(st.sampled_from(["m1", "m2"]) | text)}, ["name"])
    elif kind == "dtmf":
        digit = draw(st.sampled_from(sorted(DIGITS)) | text | json_values)
        frame["dtmf"] = maybe_drop(draw, {"track": "inbound_track", "digit": digit}, ["digit"])
    elif kind == "start":
        start = {"streamSid": sid, "callSid": draw(text), "customParameters": draw(json_values)}
        frame["start"] = maybe_drop(draw, start, ["streamSid", "callSid", "customParameters"])
    elif kind == "connected":
        frame.update(protocol="Call", version="1.0.0")
    return maybe_drop(draw, frame, [kind, "event"])


def frames(kinds: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=100),
        not_objects,
        st.dictionaries(
            st.sampled_from(["event", "media", "mark", "start"]) | st.text(max_size=6),
            json_values,
            max_size=4,
        ).map(json.dumps),
        plausible_frame(kinds).map(json.dumps),
    ).filter(lambda f: len(f.encode("utf-8", "surrogatepass")) <= MAX_SENT and not _is_stop(f))


def _is_stop(raw: str) -> bool:
    frame = parse_json(raw)
    return isinstance(frame, dict) and frame.get("event") == "stop"


def _is_key_press(raw: str) -> bool:
    frame = parse_json(raw)
    if not isinstance(frame, dict) or frame.get("event") != "dtmf" or not isinstance(frame.get("dtmf"), dict):
        return False
    digit = frame["dtmf"].get("digit")
    return isinstance(digit, str) and digit in DIGITS


def start_frame(call_sid: str, stream_sid: str) -> dict[str, Any]:
    expires = int(time.time()) + 60
    params = {"callSid": call_sid, "caller": "+15555550123", "expires": str(expires),
              "token": stream_token(AUTH_TOKEN, call_sid, expires)}  # fmt: skip
    return {
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": stream_sid,
        "start": {
            "streamSid": stream_sid, "callSid": call_sid, "accountSid": "AC1", "tracks": ["inbound"],
            "customParameters": params,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
    }  # fmt: skip


async def _receive_all(ws: aiohttp.ClientWebSocketResponse, out: list[str]) -> None:
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.TEXT:
            out.append(msg.data)


async def _media_call(svc: LoopService, before: list[str], during: list[str]) -> None:
    call_sid = "CA" + uuid.uuid4().hex
    history = svc.services.history
    received: list[str] = []
    async with svc.http.ws_connect(svc.ws_url + "/twilio/media") as ws:
        reader = asyncio.create_task(_receive_all(ws, received))
        for raw in before:
            await ws.send_str(raw)
        await ws.send_str(json.dumps(start_frame(call_sid, "MZ" + uuid.uuid4().hex)))

        async def controller_up() -> bool:  # session ready: the greeting is being recorded
            live = any(c.call_id == call_sid for c in list(svc.services.live_controllers))
            return live and any(i.kind == "message" for i in await history.get_items(call_sid))

        await wait_until(controller_up, 10, 0.02)
        for raw in during:
            await ws.send_str(raw)
        await ws.send_str(json.dumps({"event": "dtmf", "dtmf": {"track": "inbound_track", "digit": "#"}}))
        expected = sum(_is_key_press(raw) for raw in during) + 1

        async def marker_recorded() -> bool:
            items = await history.get_items(call_sid)
            return len([i for i in items if i.kind == "dtmf"]) >= expected

        await wait_until(marker_recorded, 10, 0.02)
        dtmf = [i.text for i in await history.get_items(call_sid) if i.kind == "dtmf"]
        assert len(dtmf) == expected and dtmf[-1] == "#" and all(d in DIGITS for d in dtmf)
        assert not ws.closed
        await ws.send_str(json.dumps({"event": "stop", "sequenceNumber": "9", "streamSid": "MZ1"}))
        await asyncio.wait_for(reader, 10)
        assert ws.close_code == 1000, ws.close_code

    async def ended() -> bool:
        return (await history.get_meta(call_sid)).get("status") == "ended"

    await wait_until(ended, 10, 0.02)
    for raw in received:  # what went back to "Twilio" is well-formed
        frame = json.loads(raw)
        assert frame["event"] in ("media", "mark", "clear"), frame


def _check_clean(svc: LoopService, logs: list[dict[str, Any]], errors: ErrorRecords) -> None:
    bad = [e for e in logs if e["event"] in BAD_EVENTS or e.get("exc_info")]
    assert not bad, bad
    assert not errors.records, [r.getMessage() for r in errors.records]
    state = svc.services.simulator.state
    assert state.invalid_events == [], state.invalid_events[:3]


BEFORE_KINDS = ["connected", "media", "mark", "dtmf", "nope"]
DURING_KINDS = ["connected", "media", "mark", "dtmf", "start", "nope"]


@FUZZ
@given(st.lists(frames(BEFORE_KINDS), max_size=6), st.lists(frames(DURING_KINDS), max_size=14))
@example([], ['{"event": "dtmf", "dtmf": {"digit": "' + "9" * 1000 + '"}}'])  # was: recorded as a key press
@example([], ['{"event": "dtmf", "dtmf": {"digit": ["1"]}}'])  # was: "['1']" recorded
@example(['{"event": "media", "media": {"payload": 5}}'], ['{"event": "media", "media": "AAAA"}'])
@example(["[" * 50_000], ['{"event": "mark", "mark": {"name": {"x": 1}}}'])
@example([], ['{"event": "start", "start": {"streamSid": "MZ\\"", "callSid": 1}}'])
def test_media_stream_frames_never_break_the_frame_loop(
    loop_service: Any, error_records: ErrorRecords, before: list[str], during: list[str]
) -> None:
    svc = _service(loop_service)
    with capture_logs() as logs:
        svc.run(_media_call(svc, before, during))
    _check_clean(svc, logs, error_records)


def _service(loop_service: Any) -> LoopService:
    return shared_service(loop_service)


@settings(FUZZ, max_examples=8)  # each example waits for the greeting's first audio
@given((st.text(max_size=80) | json_values).filter(lambda v: len(json.dumps(v)) < 1000))
@example('MZ1", "media": {"payload": "AAAA"}, "x": "')  # was: spliced into every outgoing frame
@example("MZ" + "0" * 32)
def test_stream_sid_is_never_spliced_into_outgoing_frames_unchecked(
    loop_service: Any, error_records: ErrorRecords, stream_sid: Any
) -> None:
    svc = _service(loop_service)

    async def scenario() -> tuple[list[str], bool]:
        call_sid = "CA" + uuid.uuid4().hex
        received: list[str] = []
        async with svc.http.ws_connect(svc.ws_url + "/twilio/media") as ws:
            reader = asyncio.create_task(_receive_all(ws, received))
            await ws.send_str(json.dumps(start_frame(call_sid, stream_sid)))
            await asyncio.sleep(0.3)  # long enough for the greeting's first audio at 8x
            started = bool(await svc.services.history.get_meta(call_sid))
            await ws.send_str(json.dumps({"event": "stop"}))
            if not started:
                await ws.close()
            await asyncio.wait_for(reader, 10)
        return received, started

    with capture_logs() as logs:
        received, started = svc.run(scenario())
    for raw in received:
        frame = json.loads(raw)
        assert frame["streamSid"] == stream_sid
    if not started:
        assert any(e["event"] == "twilio.frame_invalid" for e in logs)
    _check_clean(svc, logs, error_records)


def test_oversize_frame_closes_the_socket_and_ends_the_call(
    loop_service: Any, error_records: ErrorRecords
) -> None:
    svc = _service(loop_service)

    async def scenario() -> str:
        call_sid = "CA" + uuid.uuid4().hex
        async with svc.http.ws_connect(svc.ws_url + "/twilio/media") as ws:
            await ws.send_str(json.dumps(start_frame(call_sid, "MZ" + uuid.uuid4().hex)))
            await ws.send_str(json.dumps({"event": "media", "media": {"payload": "A" * 70_000}}))
            async for _ in ws:
                pass
            assert ws.close_code == 1009  # message too big

        async def ended() -> str | None:
            status = (await svc.services.history.get_meta(call_sid)).get("status", "")
            return status if status == "ended" else None

        return await wait_until(ended, 10, 0.05, what="the call ended")

    with capture_logs() as logs:
        assert svc.run(scenario()) == "ended"
    _check_clean(svc, logs, error_records)
