"""Text frames written straight to an aiohttp WebSocket (responder/transports/frame_writer.py):
what a strict client reads must be exactly what ``send_str`` would have sent, in order, and the
writer must step aside (write nothing) whenever ``send_str`` would do more than write."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

from responder.transports.frame_writer import FrameWriter, frame_writer, text_frame
from responder.transports.twilio.transport import TwilioCaller

Handler = Callable[[web.WebSocketResponse], Awaitable[None]]
Serve = Callable[[Handler], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Starts a server whose one WebSocket route runs ``handler`` on the prepared response."""
    servers: list[TestServer] = []

    async def start(handler: Handler) -> str:
        async def route(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            await handler(ws)
            await ws.close()
            return ws

        app = web.Application()
        app.router.add_get("/ws", route)
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        return str(server.make_url("/ws"))

    yield start
    for server in servers:
        await server.close()


def writer_of(ws: web.WebSocketResponse) -> FrameWriter:
    writer = frame_writer(ws)
    assert writer is not None, "aiohttp's writer internals changed: Twilio output uses send_str"
    return writer


async def read_texts(ws: aiohttp.ClientWebSocketResponse) -> list[str]:
    texts = []
    async for msg in ws:
        assert msg.type == WSMsgType.TEXT, msg
        texts.append(msg.data)
    return texts


def test_frames_have_the_rfc_6455_header() -> None:
    assert text_frame(b"abc") == b"\x81\x03abc"
    assert text_frame(b"x" * 125)[:2] == b"\x81\x7d"  # type: ignore[index]
    assert text_frame(b"x" * 126)[:4] == b"\x81\x7e\x00\x7e"  # type: ignore[index]
    assert text_frame(b"x" * 0xFFFF)[:4] == b"\x81\x7e\xff\xff"  # type: ignore[index]
    assert text_frame(b"x" * 0x10000) is None  # a 64-bit length: send_str's job


async def test_frames_arrive_whole_and_in_order_among_send_str_ones(serve: Serve) -> None:
    media = '{"event":"media","media":{"payload":"' + "A" * 212 + '"}}'
    big = "é" * 40000  # 80,000 bytes of UTF-8: over the 16-bit length, send_str's

    async def handler(ws: web.WebSocketResponse) -> None:
        writer = writer_of(ws)
        assert writer.write_now(media, '{"event":"mark"}')
        await ws.send_str("between")
        assert writer.write_now("")  # an empty text frame is a frame too
        assert not writer.write_now("short", big)  # nothing written: not even the first
        await ws.send_str(big)
        assert writer.write_now("x" * 300)

    url = await serve(handler)
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        texts = await read_texts(ws)
    assert texts == [media, '{"event":"mark"}', "between", "", big, "x" * 300]


async def test_it_steps_aside_once_the_socket_closes(serve: Serve) -> None:
    results: list[bool] = []

    async def handler(ws: web.WebSocketResponse) -> None:
        writer = writer_of(ws)
        await ws.receive()  # the client's close frame
        results.append(writer.write_now("late"))

    url = await serve(handler)
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.close()
    assert results == [False]


async def test_compression_is_left_to_aiohttp(serve: Serve) -> None:
    results: list[bool] = []

    async def handler(ws: web.WebSocketResponse) -> None:
        writer = writer_of(ws)
        results.append(writer.write_now("deflated?"))
        await ws.send_str("compressed by aiohttp")

    url = await serve(handler)
    async with aiohttp.ClientSession() as http, http.ws_connect(url, compress=15) as ws:
        texts = await read_texts(ws)
    assert results == [False]  # permessage-deflate negotiated: the frames need its state
    assert texts == ["compressed by aiohttp"]


async def test_a_full_buffer_is_left_to_send_str_and_its_drain(serve: Serve) -> None:
    """A client that stops reading: once the socket does not take a whole write, the writer
    refuses (send_str's accounting and drain bound the rest); nothing it wrote is lost or
    reordered, and it left no more than one write in the transport's buffer."""
    written: list[str] = []
    refused = asyncio.Event()
    buffered: list[int] = []

    async def handler(ws: web.WebSocketResponse) -> None:
        writer = writer_of(ws)
        for n in range(100000):
            text = f"{n:06d}" + "p" * 1000
            if not writer.write_now(text):
                buffered.append(ws._writer.transport.get_write_buffer_size())  # type: ignore[union-attr]
                refused.set()
                await ws.send_str(text)  # queued behind what the socket did not take
                written.append(text)
                break
            written.append(text)

    url = await serve(handler)
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        ws._response.connection.transport.pause_reading()  # type: ignore[union-attr]
        await asyncio.wait_for(refused.wait(), 20)
        ws._response.connection.transport.resume_reading()  # type: ignore[union-attr]
        texts = await read_texts(ws)
    assert 10 < len(written) < 100000
    assert texts == written
    assert 0 < buffered[0] <= 1010  # one frame: 4-byte header + 1,006 bytes


def test_an_unknown_writer_gets_none() -> None:
    class Bare:
        _writer = None

    assert frame_writer(Bare()) is None  # type: ignore[arg-type]  # not prepared


async def test_twilio_audio_sent_at_once_is_what_send_audio_sends_and_names_its_mark_only_then(
    serve: Serve,
) -> None:
    """TwilioCaller.send_audio_now: the same media and mark frames as the awaited send_audio;
    ``mark`` is asked only once the frames are certain to go out, and a payload that would not
    fit one frame, or is not ASCII, is refused before it is asked."""
    asked: list[str] = []

    def mark(name: str | None) -> Callable[[], str | None]:
        return lambda: asked.append(str(name)) or name

    payload = "/+" * 108
    results: list[bool] = []

    async def handler(ws: web.WebSocketResponse) -> None:
        caller = TwilioCaller(ws, "MZ0123")
        await caller.send_audio(payload, "m1")
        results.append(caller.send_audio_now(payload, mark("m2")))
        results.append(caller.send_audio_now(payload, mark(None)))
        results.append(caller.send_audio_now("A" * 65500, mark("too big")))
        results.append(caller.send_audio_now("AAA\u00e9", mark("not ascii")))
        await ws.receive()  # the client's close frame
        results.append(caller.send_audio_now(payload, mark("closed")))

    url = await serve(handler)
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        texts = [(await ws.receive()).data for _ in range(5)]
        await ws.close()
    assert results == [True, True, False, False, False] and asked == ["m2", "None"]
    media = json.dumps({"event": "media", "streamSid": "MZ0123", "media": {"payload": payload}})
    marks = [json.dumps({"event": "mark", "streamSid": "MZ0123", "mark": {"name": n}}) for n in ("m1", "m2")]
    expected = (media, marks[0], media, marks[1], media)
    assert [json.loads(t) for t in texts] == [json.loads(t) for t in expected]
