"""The load test's baseline: a bare Twilio ↔ Realtime bridge, written by hand in one module.

    .venv/bin/python -m benchmarks.minimal_relay --port 8081 --realtime-url ws://127.0.0.1:8090/v1/realtime

It speaks the same wire protocols as the service on both sides, so that the same callers and
the same probe model measure it the same way (``benchmarks.loadgen`` runs it beside the
service and reports every figure as a ratio to it):

* ``POST /twilio/voice`` answers TwiML that connects a Media Stream to ``/twilio/media``;
* per call, one Realtime WebSocket (aiohttp's client) configured by one ``session.update``,
  and a ``response.create`` for the greeting;
* Twilio ``media`` → ``input_audio_buffer.append`` (the base64 payload cut out of the frame
  as text, never parsed as JSON); ``response.output_audio.delta`` → Twilio ``media`` and a
  ``mark`` after each; ``input_audio_buffer.speech_started`` → Twilio ``clear``;
* a function call is answered with a fixed ``function_call_output`` and, once its response
  is done, a ``response.create`` — so the probe's supervisor turns complete.

``--model-socket openai`` opens the model WebSocket with the ``openai`` SDK (which is built on
``websockets``) instead of aiohttp's client: the same relay, to show what that library costs.

Nothing else: no signature check, no history, no Redis, no logging, no metrics, no recovery.
It is a yardstick, not a product.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final, Literal

import aiohttp
from aiohttp import web

SESSION: Final = {
    "type": "realtime",
    "instructions": "You are a helpful phone agent.",
    "output_modalities": ["audio"],
    "audio": {
        "input": {
            "format": {"type": "audio/pcmu"},
            "turn_detection": {"type": "server_vad"},
            "transcription": {"model": "gpt-4o-mini-transcribe"},
        },
        "output": {"format": {"type": "audio/pcmu"}, "voice": "marin"},
    },
    "tools": [
        {
            "type": "function",
            "name": "getNextResponseFromSupervisor",
            "description": "Ask the supervisor what to say next.",
            "parameters": {
                "type": "object",
                "properties": {"relevantContextFromLastUserMessage": {"type": "string"}},
                "required": ["relevantContextFromLastUserMessage"],
            },
        }
    ],
}
FIXED_OUTPUT: Final = json.dumps({"nextResponse": "Here is what I found for you."})
APPEND_HEAD: Final = '{"type":"input_audio_buffer.append","audio":"'
DELTA_KEY: Final = '"delta":"'
PAYLOAD_KEY: Final = '"payload":"'
CLIENT: web.AppKey[aiohttp.ClientSession] = web.AppKey("client", aiohttp.ClientSession)
CONFIG: web.AppKey[dict[str, str]] = web.AppKey("config", dict)


async def voice(request: web.Request) -> web.Response:
    await request.post()
    url = request.app[CONFIG]["public_ws"] + "/twilio/media"
    twiml = (
        f'<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="{url}"/></Connect></Response>'
    )
    return web.Response(text=twiml, content_type="text/xml")


async def ready(_: web.Request) -> web.Response:
    return web.Response(text="ok")


async def media(request: web.Request) -> web.WebSocketResponse:
    twilio = web.WebSocketResponse(max_msg_size=1 << 20)
    await twilio.prepare(request)
    model: aiohttp.ClientWebSocketResponse | None = None
    pump: asyncio.Task[None] | None = None
    stream_sid = ""
    try:
        async for msg in twilio:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            text: str = msg.data
            if model is not None and text.startswith('{"event":"media"'):
                start = text.find(PAYLOAD_KEY) + len(PAYLOAD_KEY)
                await model.send_str(APPEND_HEAD + text[start : text.index('"', start)] + '"}')
                continue
            frame = json.loads(text)
            event = frame.get("event")
            if event == "start" and model is None:
                stream_sid = frame["start"]["streamSid"]
                config = request.app[CONFIG]
                model = await _connect_model(request.app, config)
                await model.send_str(json.dumps({"type": "session.update", "session": SESSION}))
                await model.send_str(json.dumps({"type": "response.create", "response": {}}))
                pump = asyncio.create_task(_model_to_twilio(model, twilio, stream_sid))
            elif event == "media" and model is not None:  # valid JSON the fast path missed
                await model.send_str(APPEND_HEAD + frame["media"]["payload"] + '"}')
            elif event == "stop":
                break
    finally:
        if model is not None:
            await model.close()
        if pump is not None:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
        await twilio.close()
    return twilio


async def _model_to_twilio(
    model: aiohttp.ClientWebSocketResponse, twilio: web.WebSocketResponse, stream_sid: str
) -> None:
    media_head = '{"event":"media","streamSid":"' + stream_sid + '","media":{"payload":"'
    mark_head = '{"event":"mark","streamSid":"' + stream_sid + '","mark":{"name":"'
    clear = json.dumps({"event": "clear", "streamSid": stream_sid})
    marks = 0
    answer_due: list[str] = []  # call ids answered once their response is done
    async for msg in model:
        if msg.type != aiohttp.WSMsgType.TEXT:
            continue
        text: str = msg.data
        if text.startswith('{"type":"response.output_audio.delta"'):
            start = text.find(DELTA_KEY) + len(DELTA_KEY)
            await twilio.send_str(media_head + text[start : text.index('"', start)] + '"}}')
            marks += 1
            await twilio.send_str(mark_head + str(marks) + '"}}')
            continue
        event: dict[str, Any] = json.loads(text)
        kind = event.get("type")
        if kind == "input_audio_buffer.speech_started":
            await twilio.send_str(clear)
        elif kind == "response.function_call_arguments.done":
            answer_due.append(str(event["call_id"]))
        elif kind == "response.done" and answer_due:
            for call_id in answer_due:
                item = {"type": "function_call_output", "call_id": call_id, "output": FIXED_OUTPUT}
                await model.send_str(json.dumps({"type": "conversation.item.create", "item": item}))
            answer_due.clear()
            await model.send_str(json.dumps({"type": "response.create", "response": {}}))
    await twilio.close()


Socket = Literal["aiohttp", "openai"]


async def _connect_model(app: web.Application, config: dict[str, str]) -> Any:
    """The model WebSocket: aiohttp's client, or the ``openai`` SDK's (``websockets``)."""
    if config["socket"] == "openai":
        return await _SdkSocket.open(config)
    return await app[CLIENT].ws_connect(
        config["realtime_url"] + "?model=gpt-realtime",
        headers={"Authorization": "Bearer " + config["api_key"]},
        max_msg_size=16 << 20,
    )


@dataclass
class _Text:
    data: str
    type: aiohttp.WSMsgType = aiohttp.WSMsgType.TEXT


class _SdkSocket:
    """The SDK's Realtime connection (``client.realtime.connect``, raw frames: ``send_raw`` /
    ``recv_bytes``) behind the three calls the relay makes of aiohttp's socket. It measures
    what the WebSocket library the SDK is built on costs per message."""

    def __init__(self, client: Any, manager: Any, conn: Any) -> None:
        self._client, self._manager, self._conn = client, manager, conn

    @classmethod
    async def open(cls, config: dict[str, str]) -> _SdkSocket:
        from openai import AsyncOpenAI

        http_base = "http" + config["realtime_url"].removeprefix("ws").removesuffix("/realtime")
        client = AsyncOpenAI(api_key=config["api_key"], base_url=http_base)
        manager = client.realtime.connect(model="gpt-realtime")
        return cls(client, manager, await manager.__aenter__())

    async def send_str(self, text: str) -> None:
        await self._conn.send_raw(text)

    async def close(self) -> None:
        await self._manager.__aexit__(None, None, None)
        await self._client.close()

    async def __aiter__(self) -> AsyncIterator[_Text]:
        from websockets.exceptions import ConnectionClosed

        while True:
            try:
                raw = await self._conn.recv_bytes()
            except ConnectionClosed:
                return
            yield _Text(raw.decode())


def create_app(
    realtime_url: str, public_ws: str, api_key: str = "sk-minimal-relay", socket: Socket = "aiohttp"
) -> web.Application:
    app = web.Application()
    app[CONFIG] = {"realtime_url": realtime_url, "public_ws": public_ws, "api_key": api_key, "socket": socket}

    async def client(app: web.Application) -> Any:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            app[CLIENT] = session
            yield

    app.cleanup_ctx.append(client)
    app.router.add_post("/twilio/voice", voice)
    app.router.add_get("/twilio/media", media)
    app.router.add_get("/readyz", ready)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="minimal_relay", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--realtime-url", required=True, help="ws://…/v1/realtime of the model")
    parser.add_argument(
        "--model-socket", choices=("aiohttp", "openai"), default="aiohttp",
        help="the model WebSocket: aiohttp's client, or the openai SDK's (websockets)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:  # the service runs on uvloop: so does its yardstick
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - Windows
        loop = asyncio.new_event_loop()
    app = create_app(args.realtime_url, f"ws://{args.host}:{args.port}", socket=args.model_socket)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None, loop=loop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
