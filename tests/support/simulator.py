"""The simulator as its own tests and the fuzz tests drive it: the full simulator app, an SDK
client for it, the events of one realtime connection, and a browser's SDP offer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets
from aiohttp import web
from openai import AsyncOpenAI

from simulator.app import create_simulator_app
from simulator.realtime_response import SUPERVISOR_TOOL
from simulator.scenario import Scenario

OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 0",
        "c=IN IP4 0.0.0.0",
        "a=mid:0",
        "a=sendrecv",
        "a=rtpmap:111 opus/48000/2",
        "a=rtpmap:0 PCMU/8000",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "c=IN IP4 0.0.0.0",
        "a=mid:1",
        "a=sctp-port:5000",
        "",
    ]
)


def tool(name: str, arg: str) -> dict[str, Any]:
    return {
        "type": "function",
        "name": name,
        "description": f"The {name} tool.",
        "parameters": {
            "type": "object",
            "properties": {arg: {"type": "string"}},
            "required": [arg],
            "additionalProperties": False,
        },
    }


SUPERVISOR = tool(SUPERVISOR_TOOL, "relevantContextFromLastUserMessage")
ESCALATE = tool("escalate_to_human", "reason")
END_CALL = tool("end_call", "reason")

SESSION: dict[str, Any] = {
    "type": "realtime",
    "model": "gpt-realtime",
    "instructions": "You are Robin.",
    "output_modalities": ["audio"],
    "audio": {
        "input": {
            "format": {"type": "audio/pcmu"},
            "transcription": {"model": "gpt-4o-mini-transcribe"},
            "turn_detection": {"type": "semantic_vad", "create_response": True, "interrupt_response": True},
        },
        "output": {"format": {"type": "audio/pcmu"}, "voice": "marin"},
    },
    "tools": [SUPERVISOR],
}


def simulator_app(scenario: Scenario, speed: float = 8.0) -> web.Application:
    return create_simulator_app(scenario, speed=speed)


def sdk(base_url: str, api_key: str = "test") -> AsyncOpenAI:
    return AsyncOpenAI(base_url=base_url.rstrip("/") + "/v1", api_key=api_key, max_retries=0)


class Events:
    """Server events of one SDK realtime connection, kept in order."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.events: list[dict[str, Any]] = []
        self.closed = False

    async def next(self, within_s: float = 10.0) -> dict[str, Any] | None:
        """The next event, or ``None`` once the server closed the socket."""
        try:
            raw = await asyncio.wait_for(self.conn.recv_bytes(), within_s)
        except websockets.exceptions.ConnectionClosed:
            self.closed = True
            return None
        event: dict[str, Any] = json.loads(raw)
        self.events.append(event)
        return event

    async def until(self, event_type: str, within_s: float = 10.0, **match: Any) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while True:
            event = await self.next(max(0.01, deadline - loop.time()))
            if event is None:
                raise AssertionError(f"socket closed while waiting for {event_type} {match}")
            if event["type"] == event_type and all(event.get(k) == v for k, v in match.items()):
                return event

    async def through(self, event_type: str, within_s: float = 10.0) -> list[dict[str, Any]]:
        """The events from now up to and including the first of ``event_type``."""
        start = len(self.events)
        await self.until(event_type, within_s)
        return self.events[start:]

    async def until_closed(self, within_s: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while await self.next(max(0.01, deadline - loop.time())) is not None:
            pass

    async def drain(self, quiet_s: float = 0.05) -> None:
        """Read whatever has arrived, until nothing comes for ``quiet_s``."""
        try:
            while await self.next(quiet_s) is not None:
                pass
        except TimeoutError:
            return

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]
