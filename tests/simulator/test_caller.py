"""The simulated Twilio caller, against a tiny stand-in for our service."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from twilio.request_validator import RequestValidator

from simulator import audio
from simulator.caller import CallerError, CallerReport, parse_twiml, place_call
from simulator.caller_playback import PlaybackBuffer
from simulator.scenario import Scenario, Turn

TOKEN = "test-auth-token"
SPEED = 8.0
GREETING_MS = 800
ANSWER_MS = 2000
SCENARIO = Scenario(
    name="caller-test",
    quiet_ms=300,
    turns=[Turn(say="Hello there, can you hear me?", dtmf="12")],
)


@dataclass
class FakeService:
    """Records what the caller sent; plays a greeting, then an answer it clears mid-way."""

    signature_valid: bool = False
    form: dict[str, str] = field(default_factory=dict)
    frames: list[dict[str, Any]] = field(default_factory=list)
    raw_invalid: list[str] = field(default_factory=list)
    mark_sent_at: dict[str, float] = field(default_factory=dict)
    mark_echoed_at: dict[str, float] = field(default_factory=dict)
    cleared_at: float = 0.0
    speech_frames: int = 0
    first_speech_index: int = -1

    async def voice(self, request: web.Request) -> web.Response:
        self.form = {k: str(v) for k, v in (await request.post()).items()}
        signature = request.headers.get("X-Twilio-Signature", "")
        self.signature_valid = RequestValidator(TOKEN).validate(str(request.url), self.form, signature)
        if not self.signature_valid:
            return web.Response(status=403, text="bad signature")
        stream_url = str(request.url.with_scheme("ws").with_path("/media"))
        twiml = (
            '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
            f'<Stream url="{stream_url}"><Parameter name="callSid" value="{self.form["CallSid"]}"/>'
            "</Stream></Connect></Response>"
        )
        return web.Response(text=twiml, content_type="text/xml")

    async def media(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        loop = asyncio.get_running_loop()
        stream_sid = ""
        answered = False
        async for msg in ws:
            try:
                frame = json.loads(msg.data)
            except ValueError:
                self.raw_invalid.append(msg.data)
                continue
            self.frames.append(frame)
            event = frame.get("event")
            if event == "start":
                stream_sid = frame["streamSid"]
                await self._play(ws, stream_sid, GREETING_MS, "greeting")
            elif event == "mark":
                self.mark_echoed_at[frame["mark"]["name"]] = loop.time()
            elif event == "media" and audio.is_speech(base64.b64decode(frame["media"]["payload"]), "pcmu"):
                self.speech_frames += 1
                if not answered:
                    self.first_speech_index = (
                        len(self.frames) - 1
                    )  # the caller talks: answer at length, then get "barged in" on
                    answered = True
                    await self._play(ws, stream_sid, ANSWER_MS, "answer")
                    await asyncio.sleep(0.05)
                    self.cleared_at = loop.time()
                    await ws.send_json({"event": "clear", "streamSid": stream_sid})
        return ws

    async def _play(self, ws: web.WebSocketResponse, stream_sid: str, ms: int, mark: str) -> None:
        self.mark_sent_at[mark] = asyncio.get_running_loop().time()  # playback starts now
        payload = audio.speech(ms, "pcmu")
        for i in range(0, len(payload), 160):
            chunk = base64.b64encode(payload[i : i + 160]).decode()
            await ws.send_json({"event": "media", "streamSid": stream_sid, "media": {"payload": chunk}})
        await ws.send_json({"event": "mark", "streamSid": stream_sid, "mark": {"name": mark}})


@pytest.fixture
async def service(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> tuple[FakeService, TestServer]:
    fake = FakeService()
    app = web.Application()
    app.router.add_post("/twilio/voice", fake.voice)
    app.router.add_get("/media", fake.media)
    return fake, await aiohttp_server(app)


async def test_call_is_signed_streams_audio_and_models_playback(
    service: tuple[FakeService, TestServer],
) -> None:
    fake, server = service
    report: CallerReport = await place_call(
        str(server.make_url("")), SCENARIO, auth_token=TOKEN, speed=SPEED, extra_frames=["{not json"]
    )
    assert fake.signature_valid
    assert fake.form["From"] == SCENARIO.caller_number and fake.form["CallStatus"] == "ringing"
    assert (
        fake.form["CallSid"] == report.call_sid
        and report.call_sid.startswith("CA")
        and len(report.call_sid) == 34
    )
    events = [f["event"] for f in fake.frames]
    assert events[:2] == ["connected", "start"] and events[-1] == "stop"
    start = fake.frames[1]
    assert start["start"]["customParameters"] == {"callSid": report.call_sid}
    assert start["start"]["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    assert start["streamSid"] == report.stream_sid and report.stream_sid.startswith("MZ")
    assert fake.raw_invalid == ["{not json"]
    media = [f for f in fake.frames if f["event"] == "media"]
    assert len(media) == report.frames_sent
    assert all(len(base64.b64decode(f["media"]["payload"])) == 160 for f in media)
    assert [f["media"]["timestamp"] for f in media[:3]] == ["0", "20", "40"]
    seqs = [int(f["sequenceNumber"]) for f in fake.frames[1:]]
    assert seqs == list(range(1, len(seqs) + 1))
    # DTMF before speech; the caller spoke for ≈ 60 ms per character (min 600 ms)
    digits = [f["dtmf"]["digit"] for f in fake.frames if f["event"] == "dtmf"]
    assert digits == ["1", "2"]
    assert 0 < events.index("dtmf") < fake.first_speech_index
    assert fake.speech_frames == -(-60 * len(SCENARIO.turns[0].say) // 20)
    # the greeting mark came back only after its audio had played (audio time = wall × speed)
    played_s = (fake.mark_echoed_at["greeting"] - fake.mark_sent_at["greeting"]) * SPEED
    assert played_s >= GREETING_MS / 1000 * 0.9
    # clear: the answer's mark came back at once, long before its audio could have played
    assert fake.cleared_at <= fake.mark_echoed_at["answer"] < fake.cleared_at + ANSWER_MS / 1000 / SPEED / 2
    assert report.marks_echoed == 2 and report.clears_received == 1
    assert report.audio_ms_received == GREETING_MS + ANSWER_MS
    assert GREETING_MS <= report.audio_ms_played < GREETING_MS + ANSWER_MS / 2
    assert report.malformed_frames == 0 and not report.hung_up_by_service


async def test_bad_signature_is_a_clear_error(service: tuple[FakeService, TestServer]) -> None:
    _, server = service
    with pytest.raises(CallerError, match="403"):
        await place_call(str(server.make_url("")), SCENARIO, auth_token="wrong-token", speed=SPEED)


def test_parse_twiml() -> None:
    twiml = (
        '<Response><Connect><Stream url="wss://x/y"><Parameter name="a" value="1"/>'
        "</Stream></Connect></Response>"
    )
    assert parse_twiml(twiml).url == "wss://x/y" and parse_twiml(twiml).parameters == {"a": "1"}
    with pytest.raises(CallerError):
        parse_twiml("<Response><Say>hi</Say></Response>")
    with pytest.raises(CallerError):
        parse_twiml("not xml")


def test_playback_buffer_marks_and_clear() -> None:
    buffer = PlaybackBuffer()
    buffer.add_mark("empty")  # nothing queued: released on the next tick
    assert buffer.advance(0) == ["empty"]
    buffer.add_media(100)
    buffer.add_mark("a")
    buffer.add_media(100)
    buffer.add_mark("b")
    assert buffer.advance(99) == [] and buffer.playing
    assert buffer.advance(1) == ["a"]
    assert buffer.clear() == ["b"] and not buffer.playing
    assert buffer.advance(500) == [] and buffer.played_ms == 100 and buffer.received_ms == 200
