"""A lean simulated Twilio phone call for load tests: cheap enough to run 40+ in one process.

Speaks the Twilio Media Streams protocol to the service: the signed ``POST /twilio/voice``,
then the media WebSocket with ``connected``/``start``, 20 ms μ-law ``media`` frames paced in
real time (silence, stamped in their first bytes — see :mod:`simulator.probe`),
``mark`` echoes once the audio before a mark has "played", and ``stop``. Twilio's playback
buffer is modelled with one timer per mark instead of a clock tick; ``clear`` releases every
pending mark at once, as Twilio does. It also keeps when each stamped chunk started to play,
so that at a ``clear`` it knows how far into the model's audio the listener had heard (the
truth the service's ``conversation.item.truncate`` is checked against).

Unlike :mod:`simulator.caller` it follows no scenario: the probe model talks on its
own schedule, and this caller only times what it receives.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from array import array
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from twilio.request_validator import RequestValidator

from responder.core.playback import b64_decoded_len  # padding counted: 160 bytes are 216 chars
from simulator.caller_types import parse_twiml
from simulator.probe import STAMP, STAMP_CHARS, read_stamp, stamp

FRAME_MS = 20
FRAME_BYTES = 160  # 20 ms of 8 kHz μ-law
SILENCE = b"\xff" * (FRAME_BYTES - STAMP.size)
_PAYLOAD_KEY = '"payload":"'


@dataclass
class CallStats:
    """What one caller saw; times are ``time.monotonic()`` seconds."""

    tag: int
    call_sid: str
    connected_at: float | None = None  # first audio from the service (the greeting)
    ended_at: float | None = None
    error: str | None = None
    closed_by_service: bool = False
    frames_sent: array[float] = field(default_factory=lambda: array("d"))  # send time per frame
    out_sent: array[float] = field(default_factory=lambda: array("d"))  # model's stamp per delta
    out_latency_ms: array[float] = field(default_factory=lambda: array("d"))
    clears: list[float] = field(default_factory=list)
    # (clear time, heard position on the call's delta timeline in ms: see simulator.probe)
    heard_at_clear: list[tuple[float, float]] = field(default_factory=list)
    marks_echoed: int = 0
    malformed: int = 0


class LoadCall:
    def __init__(self, tag: int, service_url: str, auth_token: str, *, phase_s: float = 0.0) -> None:
        self.service_url = service_url.rstrip("/")
        self.auth_token = auth_token
        self.phase_s = phase_s
        sid = "CA" + secrets.token_hex(16)
        self.stats = CallStats(tag=tag, call_sid=sid)
        self.stream_sid = "MZ" + secrets.token_hex(16)
        self.connected = asyncio.Event()
        self.finish = asyncio.Event()  # set by the generator: stop streaming and hang up
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._seq = 0
        self._playout: deque[tuple[float, int, float]] = deque()  # (play start, seq, ms) per chunk
        self._playout_end = 0.0  # monotonic time when the queued model audio will have played
        self._heard_ms: float | None = None  # the heard position at the last clear
        self._pending_marks: dict[str, asyncio.TimerHandle] = {}
        self._media_tail = '"},"streamSid":"' + self.stream_sid + '"}'
        self._mark_head = '{"event":"mark","streamSid":"' + self.stream_sid + '","mark":{"name":"'

    async def run(self, http: aiohttp.ClientSession) -> CallStats:
        try:
            await self._run(http)
        except Exception as exc:  # a benchmark reports failures; it does not stop on them
            self.stats.error = repr(exc)
        finally:
            self.stats.ended_at = time.monotonic()
            self.connected.set()  # nobody waits forever for a call that failed to start
        return self.stats

    async def _run(self, http: aiohttp.ClientSession) -> None:
        webhook = self.service_url + "/twilio/voice"
        params = {
            "AccountSid": "AC" + "0" * 32,
            "CallSid": self.stats.call_sid,
            "CallStatus": "ringing",
            "Direction": "inbound",
            "From": "+15555550123",
            "To": "+15555550100",
        }
        signature = RequestValidator(self.auth_token).compute_signature(webhook, params)
        async with http.post(webhook, data=params, headers={"X-Twilio-Signature": signature}) as resp:
            body = await resp.text()
            if resp.status != 200:
                raise RuntimeError(f"voice webhook answered {resp.status}: {body[:200]}")
        stream = parse_twiml(body)
        async with http.ws_connect(stream.url, autoping=True, max_msg_size=1 << 20) as ws:
            self._ws = ws
            await ws.send_str(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
            start = {
                "accountSid": params["AccountSid"],
                "streamSid": self.stream_sid,
                "callSid": self.stats.call_sid,
                "tracks": ["inbound"],
                "customParameters": stream.parameters,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            }
            await ws.send_str(json.dumps({"event": "start", "sequenceNumber": "1", "start": start}))
            receiver = asyncio.create_task(self._receive(ws))
            try:
                await self._stream(ws)
                if not ws.closed:
                    stop = {"event": "stop", "streamSid": self.stream_sid, "stop": {}}
                    await ws.send_str(json.dumps(stop))
                    await ws.close()
            finally:
                receiver.cancel()
                await asyncio.gather(receiver, return_exceptions=True)
                for handle in self._pending_marks.values():
                    handle.cancel()
            if self.stats.closed_by_service:
                raise RuntimeError("the service closed the media stream")

    # -- media out ---------------------------------------------------------------------------
    async def _stream(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Paced 20 ms frames until told to finish (or the service hangs up)."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(self.phase_s)
        t0, frame, step = loop.time(), 0, FRAME_MS / 1000
        tag, sent_times = self.stats.tag, self.stats.frames_sent
        while not self.finish.is_set() and not ws.closed:
            self._seq += 1
            sent = time.monotonic()
            payload = base64.b64encode(stamp(tag, self._seq, sent) + SILENCE).decode("ascii")
            seq = str(self._seq)  # Twilio's own key order and compact separators
            text = (
                '{"event":"media","sequenceNumber":"' + seq + '","media":{"track":"inbound","chunk":"'
                + seq + '","timestamp":"' + str(frame * FRAME_MS) + '","payload":"' + payload
                + self._media_tail
            )  # fmt: skip
            try:
                await ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return
            sent_times.append(sent)
            frame += 1
            await asyncio.sleep(max(0.0, t0 + frame * step - loop.time()))

    # -- media in ----------------------------------------------------------------------------
    async def _receive(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                self.stats.malformed += 1
                continue
            data: str = msg.data
            if data.startswith('{"event":"media"'):
                received = time.monotonic()
                start = data.find(_PAYLOAD_KEY)
                if start >= 0:
                    self._on_media(data, start + len(_PAYLOAD_KEY), received)
                    continue
            self._on_control(data)
        if not self.finish.is_set():
            self.stats.closed_by_service = True
            self.finish.set()

    def _on_media(self, data: str, start: int, received: float) -> None:
        end = data.find('"', start)
        self._media(data[start : start + STAMP_CHARS], data[start:end], received)

    def _media(self, head: str, payload: str, received: float) -> None:
        found = read_stamp(head)
        ms = b64_decoded_len(payload) / 8  # μ-law bytes → ms at 8 kHz
        if found is not None:
            self.stats.out_sent.append(found[2])
            self.stats.out_latency_ms.append((received - found[2]) * 1000)
        self._queue_playout(found[1] if found is not None else None, ms, received)
        if self.stats.connected_at is None:
            self.stats.connected_at = received
            self.connected.set()

    def _on_control(self, data: str) -> None:
        try:
            frame: Any = json.loads(data)
            event = frame["event"]
        except (ValueError, KeyError, TypeError):
            self.stats.malformed += 1
            return
        try:
            self._dispatch(event, frame)
        except (KeyError, TypeError):
            self.stats.malformed += 1

    def _dispatch(self, event: Any, frame: Any) -> None:
        if event == "mark":
            name = str(frame["mark"]["name"])
            played_in = max(0.0, self._playout_end - time.monotonic())
            self._pending_marks[name] = asyncio.get_running_loop().call_later(played_in, self._echo, name)
        elif event == "clear":
            cleared = time.monotonic()
            self.stats.clears.append(cleared)
            heard = self._heard_at(cleared)
            if heard is None:  # nothing queued since the last clear: heard no further than then
                heard = self._heard_ms
            if heard is not None:
                self.stats.heard_at_clear.append((cleared, heard))
                self._heard_ms = heard
            self._playout.clear()
            self._playout_end = 0.0
            for name, handle in list(self._pending_marks.items()):
                handle.cancel()
                self._echo(name)
        elif event == "media":  # valid JSON the fast path did not recognise
            payload = str(frame["media"]["payload"])
            self._media(payload[:STAMP_CHARS], payload, time.monotonic())
        else:
            self.stats.malformed += 1

    def _queue_playout(self, seq: int | None, ms: float, received: float) -> None:
        """``ms`` more audio plays after what is queued; a stamped chunk (``seq``) is kept for
        :meth:`_heard_at` while it may still be playing."""
        start = max(self._playout_end, received)
        self._playout_end = start + ms / 1000
        if seq is None:
            return
        playout = self._playout
        playout.append((start, seq, ms))
        while len(playout) > 1 and playout[1][0] <= received:  # keep the chunk playing now
            playout.popleft()

    def _heard_at(self, t: float) -> float | None:
        """How far into the model's audio (ms on the delta timeline) the listener had heard at
        ``t``: into the chunk playing then, or to the end of the last one if playback ran dry."""
        for start, seq, ms in reversed(self._playout):
            if start <= t:
                return (seq - 1) * ms + min(ms, (t - start) * 1000)
        return None

    def _echo(self, name: str) -> None:
        self._pending_marks.pop(name, None)
        if self._ws is None or self._ws.closed:
            return
        self.stats.marks_echoed += 1
        text = self._mark_head + name + '"}}'
        task = asyncio.ensure_future(self._ws.send_str(text))
        task.add_done_callback(_ignore_result)


def _ignore_result(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()
