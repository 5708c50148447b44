"""The frame limit of the caller-side sockets is what the README says (issue 14, item 13): a
frame of exactly 64 KiB is taken, one byte more closes the socket with 1009."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aiohttp

from infra.settings import Settings
from responder.transports.stream import MAX_FRAME_BYTES

WS_PATH = "/calls/ws"


async def test_a_64_kib_audio_frame_is_taken_and_one_byte_more_closes_with_1009(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    """Was: 65,536 bytes closed /calls/ws with 1009 (aiohttp's limit is "less than")."""
    assert MAX_FRAME_BYTES == 64 * 1024
    svc = await start_service(make_settings())
    url = svc.url.replace("http://", "ws://") + WS_PATH
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(url) as ws:
            await ws.send_bytes(bytes(MAX_FRAME_BYTES))  # the call starts with it
            assert (await ws.receive_json(timeout=5))["type"] == "call"
            await ws.send_str(json.dumps({"type": "stop"}))
            texts = [msg.data async for msg in ws if msg.type == aiohttp.WSMsgType.TEXT]
        assert ws.close_code != 1009
        assert {"type": "ended", "reason": "caller_stopped"} in [json.loads(t) for t in texts]
        async with http.ws_connect(url, max_msg_size=0) as ws:
            await ws.send_bytes(bytes(MAX_FRAME_BYTES + 1))
            async for _ in ws:
                pass
        assert ws.close_code == 1009
