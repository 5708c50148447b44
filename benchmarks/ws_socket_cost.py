"""CPU per message of the two WebSocket libraries on a model socket, one loopback connection.

The service's model socket is the ``openai`` SDK's, which is ``websockets``; the minimal relay
(:mod:`benchmarks.minimal_relay`) can use aiohttp's client instead. This measures the client
side of one connection to an aiohttp server in another process, one ~330-byte text frame per
message (a 20 ms μ-law delta as JSON), paced so that each message is its own read, as on a
paced call:

* ``recv``: the server sends N frames; the client's CPU to receive them — the SDK's
  ``recv_bytes``, the ``websockets`` ``recv(decode=False)`` it awaits, aiohttp's ``receive``;
* ``send``: the client sends N frames — the SDK's ``send_raw``, ``websockets``' ``send()``, its
  protocol object directly (``send_text`` + ``send_data``) and aiohttp's ``send_str``;
* ``model-socket`` both ways: the service's own ``ModelSocket`` (``recv`` from its inbox,
  ``write_text_now``), what the service uses since issue 15.

    .venv/bin/python -m benchmarks.ws_socket_cost [--messages 4000] [--gap-ms 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import inspect
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import uvloop
import websockets
from aiohttp import web

_AUDIO = base64.b64encode(os.urandom(160)).decode()
SERVER_EVENT = json.dumps(
    {"type": "response.output_audio.delta", "event_id": "event_1234", "response_id": "resp_1",
     "item_id": "item_1", "output_index": 0, "content_index": 0, "delta": _AUDIO}
)  # fmt: skip
CLIENT_EVENT = '{"type":"input_audio_buffer.append","audio":"' + _AUDIO + '"}'


async def _serve(n: int, gap_s: float) -> None:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        mode = (await ws.receive()).data
        if mode == "recv":
            for _ in range(n):
                await ws.send_str(SERVER_EVENT)
                await asyncio.sleep(gap_s)
        else:
            for _ in range(n):
                await ws.receive()
        await ws.send_str("done")
        await ws.receive()
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    app.router.add_get("/v1/realtime", handler)  # the SDK's path
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)  # type: ignore[union-attr]
    await asyncio.sleep(3600)


async def _timed(
    mode: str, n: int, gap_s: float, recv: Callable[[], Awaitable[object]], send: Callable[[], object]
) -> float:
    """CPU of N receives, or of N paced sends (``send`` may return an awaitable), after the
    mode is announced; then the server's closing message is read."""
    started = time.process_time()
    for _ in range(n):
        if mode == "recv":
            await recv()
        else:
            sent = send()
            if inspect.isawaitable(sent):
                await sent
            await asyncio.sleep(gap_s)
    spent = time.process_time() - started
    await recv()
    return spent


async def _client(kind: str, mode: str, port: int, n: int, gap_s: float) -> float:
    url = f"ws://127.0.0.1:{port}/"
    if kind == "openai-sdk":  # the SDK's Realtime connection, raw frames
        from openai import AsyncOpenAI

        client = AsyncOpenAI(api_key="sk-bench", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)
        async with client.realtime.connect(model="gpt-realtime") as sdk:
            await sdk.send_raw(mode)
            spent = await _timed(mode, n, gap_s, sdk.recv_bytes, lambda: sdk.send_raw(CLIENT_EVENT))
        await client.close()
        return spent
    if kind == "aiohttp":
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            await ws.send_str(mode)
            return await _timed(mode, n, gap_s, ws.receive, lambda: ws.send_str(CLIENT_EVENT))
    if kind == "model-socket":  # the service's own connection class (model_socket.py)
        from responder.engines.realtime.model_socket import ModelSocket

        async with websockets.connect(url, compression=None, create_connection=ModelSocket) as lean:
            await lean.send(mode)
            frame = CLIENT_EVENT.encode()
            recv, send_now = (lambda: lean.recv(decode=False)), (lambda: lean.write_text_now(frame))
            return await _timed(mode, n, gap_s, recv, send_now)
    async with websockets.connect(url, compression=None, max_size=None) as conn:
        await conn.send(mode)

        def write_now() -> None:  # what the service's write_now does
            conn.protocol.send_text(CLIENT_EVENT.encode())
            conn.send_data()

        send = write_now if kind == "websockets-protocol" else lambda: conn.send(CLIENT_EVENT)
        return await _timed(mode, n, gap_s, lambda: conn.recv(decode=False), send)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--gap-ms", type=float, default=0.5, help="pause between two messages")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    gap_s = args.gap_ms / 1000
    if args.serve:
        uvloop.run(_serve(args.messages, gap_s))
        return
    cmd = [sys.executable, "-m", "benchmarks.ws_socket_cost", "--serve", "--messages", str(args.messages),
           "--gap-ms", str(args.gap_ms)]  # fmt: skip
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        cases = [("recv", "openai-sdk"), ("recv", "websockets"), ("recv", "model-socket"),
                 ("recv", "aiohttp"), ("send", "openai-sdk"), ("send", "websockets"),
                 ("send", "websockets-protocol"), ("send", "model-socket"), ("send", "aiohttp")]  # fmt: skip
        for mode, kind in cases:
            runs = [uvloop.run(_client(kind, mode, port, args.messages, gap_s)) for _ in range(3)]
            per = sorted(r / args.messages * 1e6 for r in runs)
            spread = f"{per[0]:.1f}–{per[2]:.1f}"
            print(f"{mode} {kind:<20} {per[1]:6.1f} µs CPU per message (median of 3; {spread})")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
