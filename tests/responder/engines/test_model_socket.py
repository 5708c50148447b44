"""The model socket's lean frame path against a raw WebSocket server that writes the bytes a
test wants, cut where the test wants: messages arrive whole and in order whichever path they
took, control frames and fragments still go through ``websockets``, and what the service
writes is a valid, masked client frame."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK

from responder.engines.realtime.model_socket import (
    CONNECT_OPTIONS,
    MAX_MESSAGE_BYTES,
    TAKEN_PER_READ,
    ModelSocket,
)
from tests.support.waits import wait_until
from tests.support.ws_frames import BINARY, CLOSE, CONT, PING, PONG, TEXT, frame, handshake_response, text


class RawServer:
    """Answers one client's handshake, writes ``script`` in ``chunk``-byte writes, one per loop
    turn (``glued``: the first write starts with the handshake response; else the response is
    read alone first), then records the client's frames, unmasked."""

    def __init__(self, script: bytes, chunk: int, glued: bool) -> None:
        self.script, self.chunk, self.glued = script, chunk, glued
        self.received: list[tuple[int, bytes, bytes]] = []  # (opcode, payload, mask)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = handshake_response(await reader.readuntil(b"\r\n\r\n"))
        if not self.glued:
            writer.write(data)
            await asyncio.sleep(0.02)
            data = b""
        data += self.script
        step = self.chunk or max(1, len(data))
        for at in range(0, len(data), step):
            writer.write(data[at : at + step])
            await writer.drain()
            await asyncio.sleep(0)
        try:
            while True:
                head = await reader.readexactly(2)
                size = head[1] & 0x7F
                if size == 126:
                    size = struct.unpack("!H", await reader.readexactly(2))[0]
                elif size == 127:
                    size = struct.unpack("!Q", await reader.readexactly(8))[0]
                mask = await reader.readexactly(4) if head[1] & 0x80 else b""
                body = await reader.readexactly(size)
                if mask:
                    body = bytes(b ^ mask[i % 4] for i, b in enumerate(body))
                self.received.append((head[0] & 0x0F, body, mask))
                if head[0] & 0x0F == CLOSE:
                    writer.write(frame(CLOSE, body))
                    await writer.drain()
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


@asynccontextmanager
async def raw_socket(
    script: bytes, chunk: int = 0, glued: bool = False, **options: object
) -> AsyncIterator[tuple[ModelSocket, RawServer]]:
    raw = RawServer(script, chunk, glued)
    server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with connect(f"ws://127.0.0.1:{port}/", **{**CONNECT_OPTIONS, **options}) as ws:  # type: ignore[arg-type]
            assert isinstance(ws, ModelSocket)
            yield ws, raw
    finally:
        server.close()


async def receive(ws: ModelSocket, count: int) -> list[bytes]:
    return [await asyncio.wait_for(ws.recv(decode=False), 5) for _ in range(count)]


# a call's traffic and everything around it: sizes on both sides of each length encoding, a
# ping, a fragmented message with a ping between its fragments, binary, empty, a JSON event
DELTA = json.dumps({"type": "response.output_audio.delta", "delta": "/" * 216}).encode()
SCRIPT_MESSAGES = [
    b"a", b"x" * 125, b"y" * 126, b"z" * 300, b"fragment", b"\x00\x01", b"", DELTA, b"w" * 4000
]  # fmt: skip
SCRIPT = b"".join(
    [
        text(b"a"), text(b"x" * 125), frame(PING, b"hb1"), text(b"y" * 126), text(b"z" * 300),
        frame(TEXT, b"fr", fin=False), frame(CONT, b"ag", fin=False), frame(PING, b"hb2"),
        frame(CONT, b"ment"), frame(BINARY, b"\x00\x01"), text(b""), text(DELTA), text(b"w" * 4000),
    ]
)  # fmt: skip


@pytest.mark.parametrize("glued", [False, True])
@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1400, 0])
async def test_messages_arrive_whole_and_in_order_however_the_bytes_are_cut(chunk: int, glued: bool) -> None:
    async with raw_socket(SCRIPT, chunk, glued) as (ws, raw):
        assert await receive(ws, len(SCRIPT_MESSAGES)) == SCRIPT_MESSAGES
        assert ws._fast, "the lean path is back in use after the ping and the fragments"
        await ws.close()
    pongs = [payload for opcode, payload, _ in raw.received if opcode == PONG]
    assert pongs == [b"hb1", b"hb2"]  # pings still answered by websockets, in order
    assert all(mask for _, _, mask in raw.received)


async def test_text_and_binary_decode_as_websockets_would() -> None:
    async with raw_socket(text("héllo") + frame(BINARY, b"\xff")) as (ws, _):
        assert await ws.recv() == "héllo"
        assert await ws.recv() == b"\xff"


@pytest.mark.parametrize("chunk", [4096, 70_000, 0])
async def test_large_frames_take_the_protocols_path(chunk: int) -> None:
    sizes = [10, 65536, 10, 65535, 200_000, 9000, 10]  # each 64-bit length met by the lean path
    script = b"".join(text(bytes([65 + i % 26]) * size) for i, size in enumerate(sizes))
    async with raw_socket(script, chunk) as (ws, _):
        got = await receive(ws, len(sizes))
    assert [len(m) for m in got] == sizes
    assert [m[:1] for m in got] == [bytes([65 + i % 26]) for i in range(len(sizes))]


@pytest.mark.parametrize(
    ("bad", "options", "code"),
    [
        (text(b"q" * 150_000), {"max_size": 100_000}, 1009),  # over the limit, protocol path
        (text(b"k" * 2000), {"max_size": 1000}, 1009),  # a lower limit holds on the lean path too
        (frame(TEXT, b"sneaky", mask=b"\x01\x02\x03\x04"), {}, 1002),  # servers never mask
    ],
)
async def test_a_bad_frame_closes_the_connection_after_the_messages_before_it(
    bad: bytes, options: dict[str, object], code: int
) -> None:
    assert MAX_MESSAGE_BYTES >= 1024 * 1024  # session events with long instructions fit
    async with raw_socket(text(b"before") + bad + text(b"never"), **options) as (ws, _):
        assert await ws.recv(decode=False) == b"before"
        with pytest.raises(ConnectionClosedError) as closed:
            await ws.recv(decode=False)
    assert closed.value.sent is not None and closed.value.sent.code == code


async def test_messages_before_a_close_are_all_delivered_then_it_ends() -> None:
    script = text(b"1") + text(b"2") + text(b"3") + frame(CLOSE, struct.pack("!H", 1000) + b"bye")
    async with raw_socket(script) as (ws, _):
        await wait_until(lambda: ws.protocol.close_rcvd is not None, what="the close frame read")
        assert await receive(ws, 3) == [b"1", b"2", b"3"]
        with pytest.raises(ConnectionClosedOK):
            await ws.recv()


async def test_reading_pauses_while_the_inbox_is_full_and_resumes_as_it_drains() -> None:
    count = 200
    async with raw_socket(b"".join(text(str(i)) for i in range(count))) as (ws, _):
        await wait_until(lambda: len(ws._inbox) > 16, what="the inbox filled")
        assert not ws.transport.is_reading()
        got = await receive(ws, count)
        assert ws.transport.is_reading()
    assert got == [str(i).encode() for i in range(count)]


async def test_a_second_concurrent_recv_is_refused() -> None:
    async with raw_socket(b"") as (ws, _):
        first = asyncio.create_task(ws.recv())
        await asyncio.sleep(0.01)
        with pytest.raises(RuntimeError):
            await ws.recv()
        first.cancel()


async def test_written_frames_are_valid_masked_client_frames() -> None:
    sizes = [0, 1, 125, 126, 127, 1000, 65535]
    payloads = [bytes([97 + i]) * size for i, size in enumerate(sizes)]
    many = [b"%d" % i for i in range(1100)]  # more masks than one pool holds
    async with raw_socket(b"") as (ws, raw):
        assert all(ws.write_text_now(p) for p in [*payloads, *many])
        assert not ws.write_text_now(b"b" * 65536)  # a 64-bit length: send() writes it
        await ws.send((b"b" * 65536).decode())
        await wait_until(lambda: len(raw.received) == len(sizes) + len(many) + 1, what="all frames read")
        await ws.close()
    frames = raw.received[: len(sizes) + len(many) + 1]
    assert [(op, body) for op, body, _ in frames] == [(TEXT, p) for p in [*payloads, *many, b"b" * 65536]]
    masks = [mask for _, _, mask in frames]
    assert all(len(m) == 4 for m in masks) and len(set(masks)) > 1000


async def test_nothing_is_written_past_a_close() -> None:
    async with raw_socket(b"") as (ws, _):
        await ws.close()
        assert not ws.write_text_now(b"late")


async def test_close_with_a_full_inbox_reads_the_close_frame_instead_of_timing_out() -> None:
    async with raw_socket(b"".join(text(str(i)) for i in range(100))) as (ws, raw):
        await wait_until(lambda: ws._reading_paused, what="reading paused")
        ws.close_timeout = 3
        started = asyncio.get_running_loop().time()
        await ws.close()
        assert asyncio.get_running_loop().time() - started < 1.0
    assert raw.received and raw.received[-1][0] == CLOSE


async def test_nothing_more_is_delivered_once_the_connection_has_failed() -> None:
    count = 3000
    async with raw_socket(b"".join(text(str(i)) for i in range(count)), chunk=64) as (ws, _):
        assert await ws.recv(decode=False) == b"0"
        ws.protocol.fail(1011, "keepalive ping timeout")  # what websockets' keepalive does
        ws.send_data()
        queued, got = len(ws._inbox), 0
        with pytest.raises(ConnectionClosedError):
            while True:
                await asyncio.wait_for(ws.recv(), 5)
                got += 1
    assert got <= queued < count - 1


@pytest.mark.parametrize("max_queue", [0, 1, (None, 2), None])
async def test_every_queue_setting_delivers(max_queue: object) -> None:
    script = b"".join(text(str(i)) for i in range(50))
    async with raw_socket(script, chunk=3, max_queue=max_queue) as (ws, _):  # partial frames held
        assert await receive(ws, 50) == [str(i).encode() for i in range(50)]


# -- watch: a marked message seen the moment it is read, when it is the reader's very next ----------
STARTED = b'{"type":"input_audio_buffer.speech_started","event_id":"e1","audio_start_ms":10,"item_id":"i1"}'


async def test_a_watched_message_for_a_waiting_reader_is_seen_before_it_is_delivered() -> None:
    seen: list[tuple[bytes, bool]] = []
    async with raw_socket(text(STARTED)) as (ws, _):
        reading = asyncio.create_task(ws.recv(decode=False))
        ws.watch(b'"input_audio_buffer.speech_started"', lambda m: seen.append((m, reading.done())))
        assert await asyncio.wait_for(reading, 5) == STARTED
    assert seen == [(STARTED, False)]  # seen in the read callback, before the reader had it


async def test_a_watched_message_behind_another_or_with_no_reader_waiting_is_seen_once_asked_for() -> None:
    """Not while the reader has not handled what is ahead of it: when it asks for the message
    (it calls recv only once it has), and once only, however many times it is woken."""
    seen: list[tuple[bytes, int]] = []
    got: list[bytes] = []

    async def read(ws: ModelSocket, count: int) -> None:
        for _ in range(count):
            got.append(await asyncio.wait_for(ws.recv(decode=False), 5))

    async with raw_socket(text(b"audio") + text(STARTED)) as (ws, _):
        ws.watch(b'"input_audio_buffer.speech_started"', lambda m: seen.append((m, len(got))) is not None)
        await read(ws, 2)  # both arrive in one read: "audio" first
    assert got == [b"audio", STARTED] and seen == [(STARTED, 1)]  # seen once "audio" was handled
    seen.clear()
    got.clear()
    async with raw_socket(text(STARTED)) as (ws, _):
        ws.watch(b'"input_audio_buffer.speech_started"', lambda m: seen.append((m, len(got))) is not None)
        await wait_until(lambda: len(ws._inbox) == 1, what="the message queued, nobody reading")
        assert seen == []
        await read(ws, 1)
    assert got == [STARTED] and seen == [(STARTED, 0)]


async def test_a_watch_that_fails_leaves_the_message_to_the_reader() -> None:
    def fails(message: bytes) -> None:
        raise ValueError("not this one")

    async with raw_socket(text(STARTED) + text(b"next")) as (ws, _):
        reading = asyncio.create_task(receive(ws, 2))
        ws.watch(b'"input_audio_buffer.speech_started"', fails)
        assert await reading == [STARTED, b"next"]


# -- a watch that takes: the waiting reader's next messages handled in the read callback ------------
AUDIO_MARK = b'"response.output_audio.delta"'


def audio(n: int) -> bytes:
    return json.dumps({"type": "response.output_audio.delta", "item_id": "i1", "delta": f"{n:04d}"}).encode()


async def test_a_watch_that_takes_handles_the_readers_next_messages_and_it_gets_the_rest() -> None:
    """Taken messages never reach the reader; the first one not taken stops the taking, and it
    and everything behind it reach the reader in order (the barge-in watch sees its message)."""
    taken: list[bytes] = []
    started: list[bytes] = []
    script = text(audio(1)) + text(audio(2)) + text(STARTED) + text(audio(3)) + text(b"end")
    async with raw_socket(script) as (ws, _):
        reading = asyncio.create_task(receive(ws, 2))
        ws.watch(AUDIO_MARK, lambda m: taken.append(m) is None)
        ws.watch(b'"input_audio_buffer.speech_started"', lambda m: started.append(m) is not None)
        assert await reading == [STARTED, b"end"]  # audio(3): taken once the reader asked again
    assert taken == [audio(1), audio(2), audio(3)] and started == [STARTED]


async def test_when_every_message_is_taken_the_reader_goes_on_waiting() -> None:
    taken: list[bytes] = []
    async with raw_socket(text(audio(1)) + text(audio(2))) as (ws, _):
        reading = asyncio.create_task(ws.recv(decode=False))
        ws.watch(AUDIO_MARK, lambda m: taken.append(m) is None)
        await wait_until(lambda: len(taken) == 2, what="both messages taken")
        await asyncio.sleep(0.02)
        assert not reading.done() and not ws._inbox
        ws.watch(AUDIO_MARK, None)  # no longer watched: the reader gets what comes next
        await ws.close()
        with pytest.raises(ConnectionClosedOK):
            await asyncio.wait_for(reading, 5)


async def test_a_burst_is_taken_only_so_far_at_a_time_the_reader_gets_a_turn_between() -> None:
    """At most TAKEN_PER_READ in a row (in the read callback, then in recv): the next one goes
    to the reader, which takes its own turn (its short steps) before it asks for more."""
    count = TAKEN_PER_READ * 3
    taken: list[bytes] = []
    async with raw_socket(b"".join(text(audio(n)) for n in range(count)) + text(b"end")) as (ws, _):
        reading = asyncio.create_task(receive(ws, 2))
        ws.watch(AUDIO_MARK, lambda m: taken.append(m) is None)
        handed = 2 * TAKEN_PER_READ  # read callback: the first batch; woken, recv: the second
        assert await reading == [audio(handed), b"end"]
    assert taken == [audio(n) for n in range(count) if n != handed]


async def test_a_binary_message_or_one_a_watch_refuses_or_fails_on_goes_to_the_reader() -> None:
    def fails(message: bytes) -> bool:
        raise ValueError("not this one")

    for script, seen in [
        (frame(BINARY, audio(1)), lambda m: True),  # text messages only
        (text(audio(1)), lambda m: False),
        (text(audio(1)), fails),
    ]:
        async with raw_socket(script) as (ws, _):
            reading = asyncio.create_task(ws.recv(decode=False))
            ws.watch(AUDIO_MARK, seen)
            assert await asyncio.wait_for(reading, 5) == audio(1)


def _long_length(payload: bytes) -> bytes:
    """A text frame with a 64-bit length (legal for a small one too: the protocol's path)."""
    return bytes((0x81, 127)) + struct.pack("!Q", len(payload)) + payload


def _big(n: int) -> bytes:
    return json.dumps({"type": "response.output_audio.delta", "delta": f"{n:04d}" + "A" * 12000}).encode()


def _fragmented(message: bytes) -> bytes:
    return frame(TEXT, message[:10], fin=False) + frame(CONT, message[10:])


OFF_THE_LEAN_PATH = {  # every message after the first takes the protocol's path
    "fragmented": b"".join(_fragmented(audio(n)) for n in range(300)),
    "64-bit length first": _long_length(audio(0)) + b"".join(text(audio(n)) for n in range(1, 300)),
    "12 KB deltas": b"".join(text(_big(n)) for n in range(60)),  # a read ending mid-frame: the rest
}


@pytest.mark.parametrize("script", OFF_THE_LEAN_PATH.values(), ids=OFF_THE_LEAN_PATH.keys())
async def test_the_take_bound_holds_per_read_whichever_path_the_frames_take(script: bytes) -> None:
    taken: list[bytes] = []
    per_read: list[int] = []
    got: list[bytes] = []
    async with raw_socket(script) as (ws, _):
        received = ws.data_received

        def counted(data: bytes) -> None:
            before = len(taken)
            received(data)
            per_read.append(len(taken) - before)

        ws.data_received = counted  # type: ignore[method-assign]  # the transport calls the attribute

        async def busy_reader() -> None:
            while True:
                got.append(await ws.recv(decode=False))
                await asyncio.sleep(0.001)

        reading = asyncio.create_task(busy_reader())
        ws.watch(AUDIO_MARK, lambda m: taken.append(m) is None)
        count = script.count(AUDIO_MARK)
        await wait_until(lambda: len(taken) + len(got) >= count, what="every message taken or read")
        reading.cancel()
    assert len(taken) + len(got) == count and max(per_read) <= TAKEN_PER_READ


async def test_text_that_is_not_utf8_is_skipped_when_asked_for_as_str_and_passed_on_as_bytes() -> None:
    """The lean path does not check UTF-8 as the protocol would (which would fail the
    connection): a reader that wants str never gets an exception for one bad message."""
    script = text(b"\xff\xfe bad") + text("good")
    async with raw_socket(script) as (ws, _):
        assert await asyncio.wait_for(ws.recv(), 5) == "good"
    async with raw_socket(script) as (ws, _):
        assert await receive(ws, 2) == [b"\xff\xfe bad", b"good"]
