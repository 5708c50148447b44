"""Agent audio taken in the model socket's read callback, end to end: a raw WebSocket model
server writing the bytes a test wants (several events in one write) ⇄ the real ``openai`` SDK
with the service's model socket ⇄ RealtimeEngine ⇄ CallController ⇄ TwilioCaller on a real
aiohttp server ⇄ a client that records every Twilio frame. What the caller gets must be what
the pump would have sent: the media in order, marks the playback knows, the tail mark last,
nothing of a reply the caller spoke over, and only frames a strict Twilio client can parse."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer

from callrecord.decisions import Decision
from callrecord.history import CallHistory
from infra import metrics
from responder.core import agent_audio
from responder.core.controller import CallController, ControllerConfig
from responder.engines.realtime.connection import make_client
from responder.engines.realtime.engine import open_engine
from responder.transports.twilio.transport import TwilioCaller
from tests.support.waits import wait_until
from tests.support.ws_frames import handshake_response, text

CHUNK = "A" * 1064  # with its 4-character tag: 801 bytes of μ-law, 100 ms


def chunk(n: int, chars: int = len(CHUNK)) -> str:
    return f"{n:04d}" + "A" * chars


class ModelServer:
    """Answers the SDK's handshake, then writes what :meth:`send` is given, in one write."""

    def __init__(self) -> None:
        self.writer: asyncio.StreamWriter | None = None
        self.ready = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(handshake_response(await reader.readuntil(b"\r\n\r\n")))
        self.writer = writer
        self.ready.set()
        while await reader.read(65536):  # the client's frames: not looked at
            pass

    async def send(self, *events: dict[str, Any] | bytes) -> None:
        assert self.writer is not None
        self.writer.write(b"".join(text(e if isinstance(e, bytes) else json.dumps(e)) for e in events))
        await self.writer.drain()


@dataclass
class Phone:
    frames: list[str] = field(default_factory=list)

    def kinds(self) -> list[str]:
        out = []
        for frame in self.frames:
            data = json.loads(frame)  # a frame a strict client cannot parse fails the test here
            if data["event"] == "media":
                out.append("media:" + data["media"]["payload"][:4])
            elif data["event"] == "mark":
                out.append("mark:" + data["mark"]["name"])
            else:
                out.append(data["event"])
        return out


@dataclass
class Call:
    model: ModelServer
    phone: Phone
    controller: CallController


async def _decide(call_id: str, context: str, **_: object) -> Decision:
    return Decision(call_id=call_id, user_item_id=None, context=context, text="x")


@asynccontextmanager
async def call(history: CallHistory) -> AsyncIterator[Call]:
    model = ModelServer()
    model_server = await asyncio.start_server(model.handle, "127.0.0.1", 0)
    port = model_server.sockets[0].getsockname()[1]
    client = make_client("sk-test", f"http://127.0.0.1:{port}/v1", f"ws://127.0.0.1:{port}/v1")
    phone, done, box = Phone(), asyncio.Event(), {}
    config = ControllerConfig(greeting=False, mark_interval_ms=100)

    async def media(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async with open_engine(client, "CAtake", {}, structlog.get_logger("test"), model="m") as engine:
            caller = TwilioCaller(ws, "MZtake")
            controller = CallController("CAtake", engine, caller, history, _decide, config)
            box["controller"] = controller
            pump = asyncio.create_task(controller.pump())
            await done.wait()
            await controller.close()
            pump.cancel()
        return ws

    app = web.Application()
    app.router.add_get("/media", media)
    server = TestServer(app)
    await server.start_server()
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(server.make_url("/media"))

    async def record() -> None:
        async for msg in ws:
            phone.frames.append(msg.data)

    recording = asyncio.create_task(record())
    try:
        await asyncio.wait_for(model.ready.wait(), 5)
        await wait_until(lambda: "controller" in box, what="the call's controller")
        yield Call(model, phone, box["controller"])
    finally:
        if model.writer is not None:
            model.writer.transport.abort()
        done.set()
        await ws.close()
        recording.cancel()
        await http.close()
        await server.close()
        model_server.close()


def created(reply: str) -> dict[str, Any]:
    return {"type": "response.created", "response": {"id": reply, "status": "in_progress", "metadata": None}}


def delta(item: str, reply: str, audio: str) -> dict[str, Any]:
    return {"type": "response.output_audio.delta", "item_id": item, "response_id": reply, "delta": audio}


def done(reply: str) -> dict[str, Any]:
    return {"type": "response.done", "response": {"id": reply, "status": "completed"}}


STARTED = {"type": "input_audio_buffer.speech_started", "event_id": "e1", "audio_start_ms": 10}


@pytest.fixture
def pumped(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The chunks the pump relayed (the ones the read callback did not take)."""
    seen: list[str] = []
    relay = agent_audio.relay

    async def counted(host: agent_audio.AudioHost, event: Any) -> None:
        seen.append(event.audio[:4])
        await relay(host, event)

    monkeypatch.setattr(agent_audio, "relay", counted)
    return seen


async def test_a_reply_read_in_one_go_reaches_the_caller_in_order_with_its_marks(
    history: CallHistory, pumped: list[str]
) -> None:
    half = [delta("a1", "r1", chunk(n, 540)) for n in range(4)]  # 408 bytes: 51 ms each
    async with call(history) as c:
        await c.model.send(created("r1"), *half, done("r1"))
        await wait_until(lambda: len(c.phone.frames) == 7, what="the reply and its tail mark")
        playback = c.controller.playback
        assert c.phone.kinds() == [  # a mark after the first chunk, then every 100 ms, then the tail
            "media:0000", "mark:m1", "media:0001", "media:0002", "mark:m2", "media:0003", "mark:m3",
        ]  # fmt: skip
        assert playback.sent_ms("a1") == 204
        assert playback.on_mark("m3") and not playback.is_playing()  # marks the playback waits for
    assert pumped == []  # all four taken as they were read, none through the pump


async def test_a_barge_in_read_with_the_replys_next_deltas_clears_and_plays_none_of_them(
    history: CallHistory,
) -> None:
    async with call(history) as c:
        await c.model.send(created("r1"), delta("a1", "r1", chunk(0)), delta("a1", "r1", chunk(1)))
        await wait_until(lambda: "media:0001" in c.phone.kinds(), what="two chunks played")
        await c.model.send(STARTED, delta("a1", "r1", chunk(2)), delta("a1", "r1", chunk(3)))
        await wait_until(lambda: "clear" in c.phone.kinds(), what="the clear")
        await c.model.send(delta("a1", "r1", chunk(4)))
        await asyncio.sleep(0.1)
        kinds = c.phone.kinds()
    assert [k for k in kinds if k.startswith("media")] == ["media:0000", "media:0001"]
    assert kinds.count("clear") == 1


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps(delta("a1", "r1", "AAAA\nBBBB")).encode(),  # a control character, once decoded
        json.dumps(delta("a1", "r1", "AAAA\u0000BBBB")).encode(),
        b'{"type":"response.output_audio.delta","item_id":"a1","response_id":"r1","delta":"AAAA\\ud800"}',
        json.dumps(delta("a1", "r1", "AAAA\u00e9BBB")).encode(),
    ],
    ids=["newline", "nul", "lone-surrogate", "non-ascii"],
)
async def test_a_delta_that_is_not_frame_safe_reaches_nobody_and_leaves_nothing_playing(
    history: CallHistory, raw: bytes
) -> None:
    async with call(history) as c:
        await c.model.send(created("r1"), raw, delta("a1", "r1", chunk(1)))
        await wait_until(lambda: "media:0001" in c.phone.kinds(), what="the good chunk")
        assert [k for k in c.phone.kinds() if k.startswith("media")] == ["media:0001"]  # all parse
        playback = c.controller.playback
        for name in [k.removeprefix("mark:") for k in c.phone.kinds() if k.startswith("mark")]:
            playback.on_mark(name)
        assert not playback.is_playing()  # no mark counted for audio that never went out


async def test_a_failure_while_relaying_sends_the_chunk_once(
    history: CallHistory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever fails in the read callback fails before the write: the pump then relays the
    chunk, once, and it is counted once."""
    fail = [True]
    observe = metrics.RESPONSE_LATENCY.observe

    def flaky(value: float) -> None:
        if fail.pop() if fail else False:
            raise RuntimeError("metrics backend down")
        observe(value)

    monkeypatch.setattr(metrics.RESPONSE_LATENCY, "observe", flaky)
    async with call(history) as c:
        c.controller.speech_stopped_at = 0.0  # the first chunk observes the response latency
        await c.model.send(created("r1"), delta("a1", "r1", chunk(0)))
        await wait_until(lambda: "media:0000" in c.phone.kinds(), what="the chunk")
        await asyncio.sleep(0.05)
        assert [k for k in c.phone.kinds() if k.startswith("media")] == ["media:0000"]
        assert c.controller.playback.sent_ms("a1") == len(chunk(0)) * 3 // 4 // 8
