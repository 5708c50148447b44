"""Text frames taken as they are parsed (responder/transports/frame_queue.py): only while the
reader is parked with nothing queued, so that every frame is handled once and in order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, ClassVar

import aiohttp
import pytest
from aiohttp import WSMsgType, web, web_ws
from aiohttp._websocket.reader import WebSocketDataQueue

from infra.settings import Settings
from responder.transports import frame_queue as fq
from responder.transports.frame_queue import FrameQueue, SyncReadSocket
from responder.transports.stream import LogNames, StreamCall
from simulator.scenario import load_scenario
from tests.support.calls import run_call
from tests.support.waits import wait_until


async def test_the_installed_aiohttp_still_lets_the_queue_be_replaced(
    socket_server: tuple[Any, list[Reader]],
) -> None:
    """An aiohttp upgrade that builds its queue otherwise must be noticed, not silently lose the
    path; and aiohttp's own name is back in place once the socket has its queue."""
    server, readers = socket_server
    async with aiohttp.ClientSession() as http, http.ws_connect(f"http://{server.host}:{server.port}/ws"):
        [reader] = await wait_until(lambda: readers, what="the server's reader")
    assert isinstance(reader.queue, FrameQueue)
    assert web_ws.WebSocketDataQueue is WebSocketDataQueue
    assert web.WebSocketResponse()._reader is None


class Reader:
    """A frame loop as StreamCall.serve runs it, over the same frame_queue.receive."""

    def __init__(self, ws: SyncReadSocket, busy_on: str) -> None:
        self.ws = ws
        self.queue = fq.frame_queue(ws)
        assert self.queue is not None
        self.busy_on = busy_on
        self.handled: list[tuple[str, str]] = []  # (how, frame)
        self.release = asyncio.Event()  # ends the reader's work on ``busy_on``
        self.queue.take = self.take

    def take(self, data: str) -> bool:
        if not data.startswith("take"):
            return False
        self.handled.append(("taken", data))
        return True

    async def run(self) -> None:
        assert self.queue is not None
        while True:
            msg = await fq.receive(self.ws, self.queue)  # as StreamCall.serve reads
            if msg.type in fq.ENDED:
                return
            self.handled.append(("read", msg.data if msg.type == WSMsgType.TEXT else repr(msg.data)))
            if msg.type == WSMsgType.TEXT and msg.data == self.busy_on:
                await self.release.wait()  # frames that come meanwhile must not be taken


@pytest.fixture
async def socket_server(aiohttp_server: Callable[..., Any]) -> tuple[Any, list[Reader]]:
    readers: list[Reader] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = SyncReadSocket(max_msg_size=int(request.query.get("max", "1024")))
        await ws.prepare(request)
        reader = Reader(ws, busy_on="slow")
        readers.append(reader)
        await reader.run()
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    return await aiohttp_server(app), readers


async def test_frames_are_taken_only_when_nothing_is_ahead_and_all_stay_in_order(
    socket_server: tuple[Any, list[Reader]],
) -> None:
    server, readers = socket_server
    url = f"http://{server.host}:{server.port}/ws"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        [reader] = await wait_until(lambda: readers, what="the server's reader, parked")
        await ws.send_str("take 1")
        await wait_until(lambda: reader.handled, what="the first frame")
        await ws.send_str("read 2")
        await ws.send_str("slow")  # the reader is busy on it until released
        await wait_until(lambda: ("read", "slow") in reader.handled, what="the slow frame read")
        for n in range(3, 6):
            await ws.send_str(f"take {n}")  # would be taken, but the reader is not parked
        await ws.send_bytes(b"\x00")
        await asyncio.sleep(0.1)
        reader.release.set()
        await wait_until(lambda: len(reader.handled) == 7, what="the queued frames read")
        await ws.send_str("take 6")  # parked again: taken
        await ws.send_bytes(b"\x01")  # never offered: not text
        await wait_until(lambda: len(reader.handled) == 9, what="the last frames")
    assert reader.handled == [
        ("taken", "take 1"), ("read", "read 2"), ("read", "slow"),
        ("read", "take 3"), ("read", "take 4"), ("read", "take 5"), ("read", "b'\\x00'"),
        ("taken", "take 6"), ("read", "b'\\x01'"),
    ]  # fmt: skip
    assert [how for how, _ in reader.handled].count("taken") == 2


async def test_a_burst_in_one_read_is_taken_only_until_a_frame_is_queued(
    socket_server: tuple[Any, list[Reader]],
) -> None:
    """Frames parsed from one TCP read: the first that is not taken is queued, so every later
    one is too, though it could be taken: the reader has not read the queued one yet."""
    server, readers = socket_server
    url = f"http://{server.host}:{server.port}/ws"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        [reader] = await wait_until(lambda: readers, what="the server's reader, parked")
        writer = ws._writer  # one write of several frames, as a burst arrives
        transport = writer.transport
        frames = b"".join(_client_text_frame(t) for t in ("take a", "take b", "read c", "take d", "take e"))
        transport.write(frames)
        await wait_until(lambda: len(reader.handled) == 5, what="the burst's frames")
    assert reader.handled == [
        ("taken", "take a"), ("taken", "take b"), ("read", "read c"), ("read", "take d"), ("read", "take e"),
    ]  # fmt: skip


async def test_frames_parsed_while_receive_resumes_a_stalled_parser_stay_behind_it(
    socket_server: tuple[Any, list[Reader]],
) -> None:
    """Over the queue's limit aiohttp stops parsing; receive() resumes it when it pops a message,
    before returning that message: what the parser then reads must not be taken ahead of it.
    Was (a reviewer's find): ``take 1`` and ``take 2`` handled before ``C``."""
    server, readers = socket_server
    url = f"http://{server.host}:{server.port}/ws?max=4194304"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        [reader] = await wait_until(lambda: readers, what="the server's reader, parked")
        big = [letter + " " * 299_999 for letter in "BC"]
        frames = b"".join(_client_text_frame(t) for t in ("slow", *big, "take 1", "take 2"))
        ws._writer.transport.write(frames)
        await wait_until(lambda: ("read", "slow") in reader.handled, what="the slow frame")
        await asyncio.sleep(0.2)
        reader.release.set()
        await wait_until(lambda: len(reader.handled) == 5, what="every frame")
    assert [(how, text[:6].strip()) for how, text in reader.handled] == [
        ("read", "slow"), ("read", "B"), ("read", "C"), ("read", "take 1"), ("read", "take 2"),
    ]  # fmt: skip


def _client_text_frame(text: str) -> bytes:
    """A masked final text frame (RFC 6455 §5.2); the mask is all zeros."""
    payload = text.encode()
    n = len(payload)
    if n < 126:
        head = bytes([0x81, 0x80 | n])
    elif n < 1 << 16:
        head = bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x81, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + b"\x00\x00\x00\x00" + payload


async def test_a_twilio_call_relays_its_media_frames_from_the_read_callback(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The media stream's socket has the queue, and its media frames are taken (while the
    call's audio still reaches the model: the call's turns are heard and answered)."""
    queues: list[FrameQueue] = []
    made = fq.FrameQueue.__init__

    def recording(self: FrameQueue, *args: Any, **kwargs: Any) -> None:
        made(self, *args, **kwargs)
        queues.append(self)

    monkeypatch.setattr(fq.FrameQueue, "__init__", recording)
    taken: list[bool] = []
    take_now = StreamCall._take_now

    def counting(self: StreamCall, data: str) -> bool:
        taken.append(result := take_now(self, data))
        return result

    monkeypatch.setattr(StreamCall, "_take_now", counting)
    scenario = load_scenario("returns")
    _, _, items = await run_call(start_service, make_settings(simulator_scenario="returns"), scenario)
    assert any(i.kind == "message" and i.text == scenario.turns[1].say for i in items)
    assert len(queues) == 1
    assert any(taken)
    assert queues[0].take is None  # let go when the call ended


class _Call(StreamCall):
    transport = "test"
    type_key = "event"
    audio_format: ClassVar[dict[str, Any]] = {}
    names = LogNames.of("test")

    def __init__(self, ws: Any) -> None:
        super().__init__(ws, SimpleNamespace(settings=SimpleNamespace(engine="realtime")))  # type: ignore[arg-type]
        self.controller = SimpleNamespace(closed=False)  # type: ignore[assignment]
        self.seen: list[str] = []

    def on_text_now(self, data: str) -> bool:
        self.seen.append(data)
        return data != "declined"


def test_the_frame_loop_takes_a_frame_only_while_call_and_socket_are_open() -> None:
    """Was (a reviewer's find): a socket closing (its close frame stuck behind a client that
    reads nothing, up to FLOOD_CLOSE_S on a flood) still had every frame taken and relayed;
    the loop, which stops reading once the socket is closed, used to handle at most one."""
    ws = SimpleNamespace(closed=False)
    call = _Call(ws)
    assert call._take_now("a") and call.frames == 1
    assert not call._take_now("declined") and call._declined == "declined" and call.frames == 1
    ws.closed = True
    assert not call._take_now("b")
    ws.closed = False
    call.controller.closed = True  # type: ignore[union-attr]
    assert not call._take_now("c")
    assert call.seen == ["a", "declined"] and call.frames == 1
