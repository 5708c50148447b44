"""PCM16 WebSocket transport (``/calls/ws``): fuzzed control frames and audio frames.

Same shape as the Twilio fuzz test: fuzzed first frames (which start the call), fuzzed frames
while the call runs, a well-formed ``dtmf`` as a marker that must be recorded after exactly
the well-formed key presses before it, then ``stop``, answered by ``ended`` and a normal close.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from tests.fuzz.strategies import json_values, maybe_drop, not_objects, text
from tests.support.fuzz import BAD_EVENTS, MAX_SENT, parse_json
from tests.support.loop_service import ErrorRecords, LoopService, shared_service
from tests.support.waits import wait_until

FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
DIGITS = frozenset("0123456789*#ABCD")
Frame = tuple[str, Any]  # ("text", str) or ("binary", bytes)


@st.composite
def plausible_control(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["start", "mark", "dtmf", "nope"]) | text)
    frame: dict[str, Any] = {"type": kind}
    if kind == "start":
        frame["caller"] = draw(st.text(max_size=80) | json_values)
    elif kind == "mark":
        frame["name"] = draw(st.sampled_from(["m1", "m2"]) | text | json_values)
    elif kind == "dtmf":
        frame["digit"] = draw(st.sampled_from(sorted(DIGITS)) | text | json_values)
    return maybe_drop(draw, frame, ["type", "caller", "name", "digit"])


text_frames = st.one_of(
    st.text(max_size=100),
    not_objects,
    st.dictionaries(
        st.sampled_from(["type", "name", "digit"]) | st.text(max_size=6), json_values, max_size=3
    ).map(json.dumps),
    plausible_control().map(json.dumps),
).filter(lambda f: len(f.encode("utf-8", "surrogatepass")) <= MAX_SENT and not _is_stop(f))
frames: st.SearchStrategy[Frame] = st.one_of(
    text_frames.map(lambda t: ("text", t)),
    st.binary(max_size=2000).map(lambda b: ("binary", b)),
    st.sampled_from([b"", b"\x00", b"\x00" * 60_001, b"\x01" * 60_000]).map(lambda b: ("binary", b)),
)


def _is_stop(raw: str) -> bool:
    frame = parse_json(raw)
    return isinstance(frame, dict) and frame.get("type") == "stop"


def _is_key_press(frame: Frame) -> bool:
    parsed = parse_json(frame[1]) if frame[0] == "text" else None
    return (
        isinstance(parsed, dict) and parsed.get("type") == "dtmf"
        and isinstance(parsed.get("digit"), str) and parsed["digit"] in DIGITS
    )  # fmt: skip


async def _send(ws: aiohttp.ClientWebSocketResponse, frame: Frame) -> None:
    if frame[0] == "text":
        await ws.send_str(frame[1])
    else:
        await ws.send_bytes(frame[1])


async def _ws_call(svc: LoopService, first: list[Frame], during: list[Frame]) -> None:
    history = svc.services.history
    texts: list[dict[str, Any]] = []
    audio_bytes: list[int] = []

    async def receive(ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                texts.append(json.loads(msg.data))  # every control frame sent is JSON
            elif msg.type == aiohttp.WSMsgType.BINARY:
                audio_bytes.append(len(msg.data))

    async with svc.http.ws_connect(svc.ws_url + "/calls/ws") as ws:
        reader = asyncio.create_task(receive(ws))
        for frame in first or [("binary", b"\x00\x00")]:
            await _send(ws, frame)

        async def controller_up() -> bool:  # session ready: the greeting is being recorded
            ids = [t.get("call_id") for t in texts if t.get("type") == "call"]
            if not ids or not any(c.call_id == ids[0] for c in list(svc.services.live_controllers)):
                return False
            return any(i.kind == "message" for i in await history.get_items(ids[0]))

        await wait_until(controller_up, 10, 0.02)
        call_id = next(t["call_id"] for t in texts if t.get("type") == "call")
        for frame in during:
            await _send(ws, frame)
        await ws.send_str(json.dumps({"type": "dtmf", "digit": "#"}))
        expected = sum(_is_key_press(f) for f in during) + 1

        async def marker_recorded() -> bool:
            items = await history.get_items(call_id)
            return len([i for i in items if i.kind == "dtmf"]) >= expected

        await wait_until(marker_recorded, 10, 0.02)
        dtmf = [i.text for i in await history.get_items(call_id) if i.kind == "dtmf"]
        # key presses sent before the controller was up are not recorded (nothing to record them)
        assert dtmf[-1] == "#" and len(dtmf) == expected and all(d in DIGITS for d in dtmf)
        await ws.send_str(json.dumps({"type": "stop"}))
        await asyncio.wait_for(reader, 10)
        assert ws.close_code == 1000, ws.close_code
    assert [t["type"] for t in texts].count("call") == 1
    assert texts[-1] == {"type": "ended", "reason": "caller_stopped"}
    assert all(t["type"] in ("call", "mark", "clear", "ended") for t in texts), texts
    assert all(n > 0 and n % 2 == 0 for n in audio_bytes)

    async def ended() -> bool:
        return (await history.get_meta(call_id)).get("status") == "ended"

    await wait_until(ended, 10, 0.02)


def _service(loop_service: Any) -> LoopService:
    return shared_service(loop_service)


@FUZZ
@given(st.lists(frames, max_size=4), st.lists(frames, max_size=14))
@example([("text", '{"type": "start", "caller": ["x"]}')], [("text", '{"type": "start"}')])
@example([("text", "[" * 50_000)], [("binary", b"\x01"), ("text", '{"type": "mark", "name": "a\\"b"}')])
@example([], [("text", '{"type": "dtmf", "digit": 1}'), ("text", '{"type": "dtmf", "digit": "12"}')])
def test_websocket_frames_never_break_the_frame_loop(
    loop_service: Any, error_records: ErrorRecords, first: list[Frame], during: list[Frame]
) -> None:
    svc = _service(loop_service)
    with capture_logs() as logs:
        svc.run(_ws_call(svc, first, during))
    bad = [e for e in logs if e["event"] in BAD_EVENTS | {"websocket.frame_failed"} or e.get("exc_info")]
    assert not bad, bad
    assert not error_records.records, [r.getMessage() for r in error_records.records]
    assert svc.services.simulator.state.invalid_events == []
