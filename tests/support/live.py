"""A GPT-Live client for the simulator's tests: the real SDK connection, a paced input stream.

The Live timeline advances only with input audio, so a client streams audio all session, as
a Twilio bridge does: :class:`LiveClient` sends 20 ms frames paced at real time ÷ speed
(silence, or synthetic speech while :meth:`LiveClient.speak` says so), reads every server
event into :attr:`LiveClient.events`, and can check them all against the SDK's types.
:func:`live_sims` serves the simulator's Live routes and checks every event at the end.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import websockets
from aiohttp import web
from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI
from openai.types.live import ConnectServerEvent, ServerEvent
from pydantic import TypeAdapter

from simulator.live_audio import LiveFormat
from simulator.live_protocol import undeclared_key
from simulator.live_record import LiveSessionRecord
from simulator.live_routes import add_live_routes
from simulator.scenario import Scenario
from simulator.state import STATE_KEY, SimulatorState

SERVER_EVENT: TypeAdapter[Any] = TypeAdapter(ServerEvent)
SIDEBAND_EVENT: TypeAdapter[Any] = TypeAdapter(ConnectServerEvent)
PCMU: dict[str, Any] = {"type": "audio/pcmu", "rate": 8000}
PCM24: dict[str, Any] = {"type": "audio/pcm", "rate": 24000}
FRAME_MS = 20


def live_session(fmt: dict[str, Any] = PCMU, **extra: Any) -> dict[str, Any]:
    """A ``session.start`` config: client delegation, the given audio format."""
    return {
        "model": "gpt-live-1.1",
        "instructions": "You are Robin.",
        "audio": {"format": fmt, "output": {"voice": "marin"}},
        "delegation": {"type": "client"},
        **extra,
    }


def check_server_events(events: list[dict[str, Any]], *, sideband: bool = False) -> None:
    """Every event validates against the SDK's ``ServerEvent`` (``ConnectServerEvent`` on a
    sideband) and declares every key."""
    adapter = SIDEBAND_EVENT if sideband else SERVER_EVENT
    for event in events:
        model = adapter.validate_python(event)
        assert undeclared_key(model) is None, (event["type"], undeclared_key(model))


class LiveClient:
    """One SDK primary Live connection with a background reader and a paced input stream."""

    def __init__(self, conn: Any, *, speed: float, sideband: bool = False) -> None:
        self.conn = conn
        self.speed = speed
        self.sideband = sideband
        self.events: list[dict[str, Any]] = []
        self.closed = False
        self.sent_ms = 0  # input audio sent so far: the session timeline, once started
        self.fmt = LiveFormat.of(PCMU)
        self._cursor = 0
        self._arrived = asyncio.Event()
        self._speech_frames = 0
        self._speech_done = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())
        self._streamer: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, base_url: str, *, speed: float) -> tuple[LiveClient, Any]:
        sdk = AsyncOpenAI(base_url=base_url, api_key="test", max_retries=0)
        manager = sdk.live.connect()
        return cls(await manager.__aenter__(), speed=speed), manager

    @classmethod
    async def attach(cls, base_url: str, session_id: str, *, speed: float) -> tuple[LiveClient, Any]:
        """A sideband connection to a WebRTC/SIP session (no input stream: the simulator's
        virtual caller plays the caller)."""
        sdk = AsyncOpenAI(base_url=base_url, api_key="test", max_retries=0)
        manager = sdk.live.sideband.connect(session_id=session_id)
        return cls(await manager.__aenter__(), speed=speed, sideband=True), manager

    async def stop_streaming(self) -> None:
        """Stop the input stream: the session timeline stops with it."""
        if self._streamer is not None:
            self._streamer.cancel()
            await asyncio.gather(self._streamer, return_exceptions=True)

    async def aclose(self) -> None:
        for task in (self._streamer, self._reader):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    # --- events in -----------------------------------------------------------------------

    async def _read(self) -> None:
        try:
            while True:
                self.events.append(json.loads(await self.conn.recv_bytes()))
                self._arrived.set()
        except websockets.exceptions.ConnectionClosed:
            self.closed = True
            self._arrived.set()

    async def until(
        self, event_type: str, within_s: float = 5.0, where: Callable[[dict[str, Any]], bool] | None = None
    ) -> dict[str, Any]:
        """The next event of ``event_type`` (after the last one returned), waiting for it."""
        async with asyncio.timeout(within_s):
            while True:
                for index in range(self._cursor, len(self.events)):
                    event = self.events[index]
                    if event["type"] == event_type and (where is None or where(event)):
                        self._cursor = index + 1
                        return event
                if self.closed:
                    raise AssertionError(f"socket closed while waiting for {event_type}")
                self._arrived.clear()
                await self._arrived.wait()

    async def until_closed(self, within_s: float = 5.0) -> None:
        async with asyncio.timeout(within_s):
            while not self.closed:
                self._arrived.clear()
                await self._arrived.wait()

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == event_type]

    def types(self, *, audio: bool = False) -> list[str]:
        skip = () if audio else ("session.output_audio.delta",)
        return [e["type"] for e in self.events if e["type"] not in skip]

    # --- events out ----------------------------------------------------------------------

    async def send(self, event: dict[str, Any]) -> None:
        await self.conn.send_raw(json.dumps(event))

    async def start(self, session: dict[str, Any] | None = None, *, stream: bool = True) -> dict[str, Any]:
        """``session.start`` (the SDK helper), wait for ``session.started``, start streaming."""
        session = session or live_session()
        self.fmt = LiveFormat.of(session.get("audio", {}).get("format"))
        await self.conn.session.start(session=session)
        started = await self.until("session.started")
        if stream:
            self._streamer = asyncio.get_running_loop().create_task(self._stream())
        return started

    async def speak(self, ms: int) -> None:
        """Speak for ``ms`` of input audio (then the stream goes back to silence)."""
        self._speech_done.clear()
        self._speech_frames = -(-ms // FRAME_MS)
        await self._speech_done.wait()

    async def stream_for(self, ms: int) -> None:
        """Wait until ``ms`` more input audio has been sent."""
        target = self.sent_ms + ms
        async with asyncio.timeout(5 + ms / 1000 / self.speed * 2):
            while self.sent_ms < target:  # the streamer advances it
                await asyncio.sleep(0.002)

    async def _stream(self) -> None:
        loop = asyncio.get_running_loop()
        t0, step_s, frame, offset = loop.time(), FRAME_MS / 1000 / self.speed, 0, 0
        silence = base64.b64encode(self.fmt.silence(FRAME_MS)).decode("ascii")
        while True:
            if self._speech_frames > 0:
                audio = base64.b64encode(self.fmt.speech(FRAME_MS, offset_ms=offset)).decode("ascii")
                offset += FRAME_MS
            else:
                audio = silence
            await self.conn.send_raw('{"type":"session.input_audio.append","audio":"' + audio + '"}')
            self.sent_ms += FRAME_MS
            if self._speech_frames > 0:
                self._speech_frames -= 1
                if self._speech_frames == 0:
                    self._speech_done.set()
            frame += 1
            await asyncio.sleep(max(0.0, t0 + frame * step_s - loop.time()))


@dataclass
class LiveSim:
    """A simulator app serving the Live routes, and the clients opened on it."""

    server: TestServer
    state: SimulatorState
    clients: list[LiveClient] = field(default_factory=list)
    managers: list[Any] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return str(self.server.make_url("/v1"))

    @property
    def sdk(self) -> AsyncOpenAI:
        return AsyncOpenAI(base_url=self.base_url, api_key="test", max_retries=0)

    async def connect(self) -> LiveClient:
        client, manager = await LiveClient.open(self.base_url, speed=self.state.speed)
        self.clients.append(client)
        self.managers.append(manager)
        return client

    async def attach(self, session_id: str) -> LiveClient:
        client, manager = await LiveClient.attach(self.base_url, session_id, speed=self.state.speed)
        self.clients.append(client)
        self.managers.append(manager)
        return client

    @property
    def session(self) -> LiveSessionRecord:
        """The newest Live session's record."""
        return self.state.live_sessions[-1]


OpenLive = Callable[..., Awaitable[LiveSim]]


@contextlib.asynccontextmanager
async def live_sims(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> AsyncIterator[OpenLive]:
    """``await open_sim(scenario, speed=…, **state_fields)`` → a :class:`LiveSim`; on exit every
    server event its clients got must match the SDK's types. A test module's fixture::

        @pytest.fixture
        async def open_live(aiohttp_server) -> AsyncIterator[OpenLive]:
            async with live_sims(aiohttp_server) as open_sim:
                yield open_sim
    """
    sims: list[LiveSim] = []

    async def open_sim(scenario: Scenario, *, speed: float = 10.0, **state_fields: Any) -> LiveSim:
        state = SimulatorState(scenario=scenario, speed=speed, **state_fields)
        app = web.Application()
        app[STATE_KEY] = state
        add_live_routes(app)
        sim = LiveSim(await aiohttp_server(app), state)
        sims.append(sim)
        return sim

    yield open_sim
    for sim in sims:
        for client in sim.clients:
            await client.aclose()
        for manager in sim.managers:
            await manager.__aexit__(None, None, None)
        for client in sim.clients:
            check_server_events(client.events, sideband=client.sideband)
