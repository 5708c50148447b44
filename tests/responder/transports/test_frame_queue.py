"""Text frames taken as they are parsed (responder/transports/frame_queue.py): only while the
reader is parked with nothing queued, so that every frame is handled once and in order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from infra.settings import Settings
from responder.transports import frame_queue as fq
from responder.transports.frame_queue import SUPPORTED, FrameQueue, SyncReadSocket
from simulator.scenario import load_scenario
from tests.support.calls import run_call
from tests.support.waits import wait_until


def test_the_installed_aiohttp_still_lets_the_queue_be_replaced() -> None:
    """An aiohttp upgrade that changes _post_start must be noticed, not silently lose the path."""
    assert SUPPORTED


class Reader:
    """A serve loop as StreamTransport.serve runs it: parked in receive() with ``idle`` set."""

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
            self.queue.idle = True
            try:
                msg = await self.ws.receive()
            finally:
                self.queue.idle = False
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return
            self.handled.append(("read", msg.data if msg.type == WSMsgType.TEXT else repr(msg.data)))
            if msg.type == WSMsgType.TEXT and msg.data == self.busy_on:
                await self.release.wait()  # frames that come meanwhile must not be taken


@pytest.fixture
async def socket_server(aiohttp_server: Callable[..., Any]) -> tuple[Any, list[Reader]]:
    readers: list[Reader] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = SyncReadSocket(max_msg_size=1024)
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
    assert reader.queue is not None and reader.queue.taken == 2


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


def _client_text_frame(text: str) -> bytes:
    """A masked final text frame (RFC 6455 §5.2) of under 126 bytes; the mask is all zeros."""
    payload = text.encode()
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + b"\x00\x00\x00\x00" + payload


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
    scenario = load_scenario("returns")
    _, _, items = await run_call(start_service, make_settings(simulator_scenario="returns"), scenario)
    assert any(i.kind == "message" and i.text == scenario.turns[1].say for i in items)
    assert len(queues) == 1
    assert queues[0].taken > 0
    assert queues[0].take is None  # let go when the call ended
