"""Calls over the PCM16 WebSocket transport (``/calls/ws``) as the tests place them.

A scripted client (aiohttp) plays the browser: it streams paced PCM16 24 kHz frames of
synthetic speech, models a playback buffer (marks echoed once the audio before them has
played, ``clear`` drops queued audio and releases its marks) and takes its turns from a
script, at the audio speed of the service's simulator.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from simulator import audio
from simulator.caller import speech_ms_for
from simulator.caller_playback import PlaybackBuffer
from simulator.scenario import Scenario
from tests.support.service import RunningService
from tests.support.waits import wait_until

FRAME_MS = 20
QUIET_S = 0.9  # wall-clock silence after which the client speaks again
TICK_S = 0.01
CALLER = "+15555550199"


@dataclass
class WsReport:
    call_id: str = ""
    first_message: dict[str, Any] = field(default_factory=dict)
    ended: dict[str, Any] | None = None
    marks_echoed: int = 0
    clears: int = 0
    audio_ms: float = 0.0
    after_ended: int = 0


class PcmClient:
    """The browser side of ``/calls/ws`` in audio time (``speed`` × wall clock)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, speed: float) -> None:
        self.ws = ws
        self.speed = speed
        self.report = WsReport()
        self.playback = PlaybackBuffer()
        self.loop = asyncio.get_running_loop()
        self.last_activity = self.loop.time()
        self._speech_frames = 0
        self._speech_done = asyncio.Event()
        self.closed = asyncio.Event()

    async def run(self, script: Callable[[PcmClient], Any], caller: str | None = None) -> WsReport:
        if caller is not None:  # the optional start frame goes before any audio
            await self.send_json({"type": "start", "caller": caller})
        tasks = [asyncio.create_task(c()) for c in (self._stream, self._receive, self._clock)]
        try:
            await script(self)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return self.report

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message))

    async def speak(self, ms: float) -> None:
        self._speech_done.clear()
        self._speech_frames = -(-int(ms) // FRAME_MS)
        await self._speech_done.wait()
        self.last_activity = self.loop.time()

    async def wait_quiet(self, quiet_s: float = QUIET_S) -> None:
        """Until nothing has played or arrived for ``quiet_s`` (wall clock)."""
        await wait_until(
            lambda: not self.playback.playing and self.loop.time() - self.last_activity >= quiet_s,
            30.0, TICK_S, what="a quiet line",
        )  # fmt: skip

    async def _stream(self) -> None:
        t0, step, n, offset = self.loop.time(), FRAME_MS / 1000 / self.speed, 0, 0
        while not self.ws.closed:
            if self._speech_frames > 0:
                frame = audio.speech(FRAME_MS, "pcm16", offset_ms=offset)
                offset += FRAME_MS
                self._speech_frames -= 1
                if self._speech_frames == 0:
                    self._speech_done.set()
            else:
                frame = audio.silence(FRAME_MS, "pcm16")
            await self.ws.send_bytes(frame)
            n += 1
            await asyncio.sleep(max(0.0, t0 + n * step - self.loop.time()))

    async def _clock(self) -> None:
        last = self.loop.time()
        while True:
            await asyncio.sleep(TICK_S)
            now = self.loop.time()
            if self.playback.playing:
                self.last_activity = now
            await self._echo(self.playback.advance((now - last) * 1000 * self.speed))
            last = now

    async def _echo(self, marks: list[str]) -> None:
        for name in marks:
            if not self.ws.closed:
                await self.send_json({"type": "mark", "name": name})
                self.report.marks_echoed += 1

    async def _receive(self) -> None:
        async for msg in self.ws:
            if self.report.ended is not None:
                self.report.after_ended += 1
            if msg.type == aiohttp.WSMsgType.BINARY:
                ms = audio.duration_ms(len(msg.data), "pcm16")
                self.playback.add_media(ms)
                self.report.audio_ms += ms
                self.last_activity = self.loop.time()
                continue
            message = json.loads(msg.data)
            if not self.report.first_message:
                self.report.first_message = message
            kind = message["type"]
            if kind == "call":
                self.report.call_id = message["call_id"]
            elif kind == "mark":
                self.playback.add_mark(message["name"])
            elif kind == "clear":
                self.report.clears += 1
                self.last_activity = self.loop.time()
                await self._echo(self.playback.clear())
            elif kind == "ended":
                self.report.ended = message
        self.closed.set()


def scenario_script(scenario: Scenario) -> Callable[[PcmClient], Any]:
    """Greeting, then the scenario's turns (barge-in turns speak over the playing answer)."""

    async def script(client: PcmClient) -> None:
        if scenario.greeting:
            await wait_until(lambda: client.playback.received_ms > 0, 10, what="the greeting")
        await client.wait_quiet()
        heard_at_turn_end = client.playback.played_ms
        for turn in scenario.turns:
            if turn.barge_in_after_ms is not None:
                target = heard_at_turn_end + turn.barge_in_after_ms
                await wait_until(lambda target=target: client.playback.played_ms >= target, 30, TICK_S)
            else:
                await client.wait_quiet()
            await client.speak(speech_ms_for(turn))
            heard_at_turn_end = client.playback.played_ms
        await client.wait_quiet()
        await client.send_json({"type": "stop"})
        await wait_until(client.closed.is_set, 10, what="the socket closed")

    return script


async def ws_call(
    svc: RunningService, script: Callable[[PcmClient], Any], caller: str | None = CALLER,
    engine: str | None = None,
) -> WsReport:
    url = svc.url.replace("http", "ws", 1) + "/calls/ws" + (f"?engine={engine}" if engine else "")
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        return await PcmClient(ws, svc.speed).run(script, caller)
