"""Probe mode for GPT-Live: a cheap, timed model on the primary Live WebSocket (load tests).

With the simulator in probe mode (``responder simulate --probe``), every primary
``/v1/live/sessions`` socket is played by a :class:`LiveProbeSession` instead of the full Live
double (:mod:`simulator.live`). It speaks the wire protocol the service's Live engine expects
(docs/protocol-live.md) and records into the same :class:`~simulator.probe.ProbeRecorder` as the
Realtime probe, so ``GET /_probe`` reports a Live call like a Realtime one:

* ``session.start`` → ``session.started``; nothing is validated after that, and caller audio
  (``session.input_audio.append``) takes a raw-string fast path: the stamp in its first bytes is
  read (call tag, sequence number, send time) and its length moves the session timeline;
* the output is one continuous track, as on the real server: a ``session.output_audio.delta``
  every :attr:`LiveProbeConfig.delta_ms`, real-time paced :data:`~simulator.probe.LEAD_MS`
  ahead; silence between utterances, stamped loud μ-law while the model speaks (the engine
  forwards only voiced chunks), with ``session.output_transcript.delta`` as it talks;
* the model starts talking on the first ``session.commentary.append`` (the service's greeting),
  speaks :data:`~simulator.probe.TALK_MS`, then the caller "speaks" a short turn:
  ``session.input_transcript.delta`` fragments on the timeline, which is how the engine sees a
  caller turn;
* every :attr:`LiveProbeConfig.barge_in_every`-th response is barged in on as Live shows it:
  there is no interruption event, the caller's transcript starts while the model speaks and
  the model falls silent (the engine turns that first fragment into a barge-in, the service
  sends Twilio a ``clear``);
* every :attr:`LiveProbeConfig.delegate_every`-th caller turn is delegated
  (``session.delegation.created``): the service runs its supervisor and answers with a
  ``session.commentary.append`` carrying the delegation id, which the probe speaks as its next
  response (silence meanwhile, as the model would keep the line); a ``session.thinking.append``
  while it waits (the service's progress note) is counted as a hold line.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from simulator.live_audio import LiveFormat
from simulator.live_protocol import resolve_session
from simulator.probe import (
    ANSWER_TIMEOUT_S,
    BARGE_IN_AT_MS,
    LEAD_MS,
    PAUSE_MS,
    STAMP_CHARS,
    TALK_MS,
    USER_TURN_MS,
    ProbeConfig,
    ProbeRecorder,
    ProbeSocket,
    stamped_audio,
)
from simulator.realtime_items import new_id

log = structlog.get_logger("simulator.probe")

APPEND_PREFIX = '{"type":"session.input_audio.append","audio":"'
FRAGMENT_MS = 400  # a caller transcript fragment every this much of the caller's turn
WORDS_EVERY_MS = 500  # an output transcript delta every this much of the model's speech
SPOKEN_WORDS = "probe answer words "
DELEGATE_AFTER_MS = 200  # after the caller's last fragment, the model delegates
# Loud μ-law (far from the two quiet segments the engine's silence gate counts as silence).
VOICED_FILL = b"\x20"


DELEGATE_EVERY = 3  # the default: every third caller turn is delegated


@dataclass(frozen=True)
class LiveProbeConfig:
    """How the Live probe model talks: ``app[LIVE_PROBE_KEY]`` when set, else
    :meth:`following` the simulator's :class:`~simulator.probe.ProbeConfig`."""

    delegate_every: int = DELEGATE_EVERY  # every Nth caller turn is delegated; 0: never
    barge_in_every: int = 2  # every Nth response is talked over; 0: never
    delta_ms: int = 100  # audio per output delta (the real primary socket: ~100 ms)

    def __post_init__(self) -> None:
        if self.delegate_every < 0 or self.barge_in_every < 0 or self.delta_ms <= 0:
            raise ValueError("delegate_every and barge_in_every must be >= 0, delta_ms > 0")

    @classmethod
    def following(cls, probe: ProbeConfig) -> LiveProbeConfig:
        """The Realtime probe's settings, as far as they apply: its delta size and barge-in
        cadence; its hand-over cadence when set (``--probe-supervisor-every N``), else
        :data:`DELEGATE_EVERY` (there 0 means no hand-overs: the Live model delegates)."""
        delegate_every = probe.supervisor_every or DELEGATE_EVERY
        return cls(delegate_every, probe.barge_in_every, probe.delta_ms)

    def barged_in(self, response_no: int) -> bool:
        every = self.barge_in_every
        return every > 0 and response_no % every == every - 1

    def delegates(self, user_turn: int) -> bool:
        """Caller turn ``user_turn`` (1: the first) is delegated."""
        return self.delegate_every > 0 and user_turn % self.delegate_every == 0


LIVE_PROBE_KEY: web.AppKey[LiveProbeConfig] = web.AppKey("live_probe_config", LiveProbeConfig)


class LiveProbeSession(ProbeSocket):
    """One primary Live WebSocket in probe mode (see the module docstring)."""

    def __init__(
        self, ws: web.WebSocketResponse, recorder: ProbeRecorder, config: LiveProbeConfig | None = None
    ) -> None:
        super().__init__(ws, recorder)
        self.config = config or LiveProbeConfig()
        self.session: dict[str, Any] | None = None
        self.timeline_ms = 0.0  # caller audio received, in ms of the session format
        self._bytes_per_ms = 48.0
        self._seq = 0
        self._track_due = 0.0  # loop time at which the next output delta is due
        self._silent = ""
        self._delta_bytes = 0
        self._delegation: str | None = None  # the delegation waiting for its answer
        self._answered = asyncio.Event()
        self._answered_at = 0.0

    async def on_text(self, text: str) -> None:
        if text.startswith(APPEND_PREFIX):  # the hot path: the stamp and the length, nothing else
            self._appended(text)
            return
        try:
            data = json.loads(text)
            kind = data["type"]
        except (ValueError, KeyError, TypeError):
            log.warning("simulator.probe.event_invalid", sample=text[:80])
            return
        echo = {"client_event_id": data["event_id"]} if isinstance(data.get("event_id"), str) else {}
        if kind == "session.input_audio.append":  # framed some other way: the slow path
            self._appended(APPEND_PREFIX + str(data.get("audio", "")) + '"}')
        elif kind == "session.start":
            await self._start(data.get("session") or {}, echo)
        elif kind == "session.commentary.append":
            await self._placed("commentary", echo)
            self._commentary(data.get("delegation_id"))
        elif kind in ("session.thinking.append", "session.instructions.append"):
            await self._placed(kind.split(".")[1], echo)
            if kind == "session.thinking.append" and self._delegation is not None:
                self.times.hold_lines += 1  # the service's progress note while the supervisor works
        elif kind == "session.update" and self.session is not None:
            await self.emit({"type": "session.updated", "session": self.session, **echo})
        elif kind == "session.close":
            usage = {"seconds": round(self.timeline_ms / 1000, 3)}
            closed = {"type": "session.closed", "reason": "close_requested", "session": self.session}
            await self.emit({**closed, "usage": usage, **echo})
            self._closed = True
            await self.ws.close()

    async def _start(self, config: dict[str, Any], echo: dict[str, Any]) -> None:
        self.session = resolve_session(config, new_id("live"))
        fmt = LiveFormat.of(self.session["audio"]["format"])
        self._bytes_per_ms = float(fmt.bytes_per_ms)
        self._delta_bytes = self.config.delta_ms * fmt.bytes_per_ms
        self._silent = base64.b64encode(fmt.silence(self.config.delta_ms)).decode("ascii")
        await self.emit({"type": "session.started", "session": self.session, **echo})

    async def _placed(self, kind: str, echo: dict[str, Any]) -> None:
        at = int(self.timeline_ms)
        await self.emit({"type": f"session.{kind}.appended", "start_ms": at, "end_ms": at, **echo})

    def _commentary(self, delegation_id: Any) -> None:
        if self._driver is None and self.session is not None:  # the greeting: the model starts
            self._driver = asyncio.create_task(self._converse())
        elif delegation_id is not None and delegation_id == self._delegation and not self._answered.is_set():
            self._answered_at = time.monotonic()
            self._answered.set()

    def _appended(self, text: str) -> None:
        received = time.monotonic()
        start = len(APPEND_PREFIX)
        chars = len(text) - start - 2  # without the closing '"}'
        pad = text.count("=", len(text) - 4, len(text) - 2)
        self.timeline_ms += max(0, chars * 3 // 4 - pad) / self._bytes_per_ms
        self._stamped(text[start : start + STAMP_CHARS], received)

    # -- the output track --------------------------------------------------------------------
    async def _tick(self, voiced: bool) -> None:
        """The next delta of the track, at its due time (real time, LEAD_MS ahead)."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, self._track_due - loop.time()))
        self._track_due += self.config.delta_ms / 1000
        if not voiced:
            await self.emit_text('{"type":"session.output_audio.delta","delta":"' + self._silent + '"}')
            return
        self._seq += 1
        delta, sent = stamped_audio(self.tag, self._seq, self._delta_bytes, VOICED_FILL)
        self.times.out_sent.append(sent)
        await self.emit_text('{"type":"session.output_audio.delta","delta":"' + delta + '"}')

    async def _silence(self, ms: float) -> None:
        for _ in range(max(1, round(ms / self.config.delta_ms))):
            await self._tick(False)

    # -- the model's side of the conversation ------------------------------------------------
    async def _converse(self) -> None:
        loop = asyncio.get_running_loop()
        self._track_due = loop.time() - LEAD_MS / 1000
        response_no = user_turn = 0
        while not self._closed:
            barge_in = self.config.barged_in(response_no)
            await self._speak(TALK_MS, barge_in)
            response_no += 1
            if not barge_in:
                await self._silence(LEAD_MS + PAUSE_MS)  # heard out, then the caller talks
            user_turn += 1
            await self._caller_turn(user_turn, already_started=barge_in)
            if self.config.delegates(user_turn):
                await self._delegate()

    async def _speak(self, talk_ms: int, barge_in: bool) -> None:
        """An utterance of ``talk_ms``; a barged-in one stops at BARGE_IN_AT_MS of wall time,
        when the caller's first transcript fragment goes out (the model falls silent)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        step = self.config.delta_ms
        for n in range(talk_ms // step):
            if barge_in and self._track_due - started >= BARGE_IN_AT_MS / 1000:
                await asyncio.sleep(max(0.0, started + BARGE_IN_AT_MS / 1000 - loop.time()))
                self.times.barge_ins.append(time.monotonic())
                await self._fragment("Probe ")
                return
            if n * step % WORDS_EVERY_MS == 0:
                at = int(self.timeline_ms)
                words = {"delta": SPOKEN_WORDS, "start_ms": at, "end_ms": at + WORDS_EVERY_MS}
                await self.emit({"type": "session.output_transcript.delta", **words})
            await self._tick(True)

    async def _fragment(self, words: str) -> None:
        end = int(self.timeline_ms)
        fragment = {"delta": words, "start_ms": max(0, end - FRAGMENT_MS), "end_ms": end}
        await self.emit({"type": "session.input_transcript.delta", **fragment})

    async def _caller_turn(self, turn: int, *, already_started: bool) -> None:
        """The caller speaks USER_TURN_MS: a transcript fragment every FRAGMENT_MS (the first
        already sent at a barge-in), on the silent track."""
        words = ["Probe ", "turn ", f"{turn}."]
        if not already_started:
            await self._fragment(words[0])
        for word in words[1:]:
            await self._silence(USER_TURN_MS / (len(words) - 1))
            await self._fragment(word)

    async def _delegate(self) -> None:
        """Hand the turn over; its answer (commentary with the id) is the next response."""
        await self._silence(DELEGATE_AFTER_MS)
        delegation_id = new_id("dlg")
        self._delegation = delegation_id
        self._answered.clear()
        delegation = {"id": delegation_id, "target": "client", "type": "delegation"}
        asked = time.monotonic()
        self.times.handovers.append(asked)
        created = {"type": "session.delegation.created", "delegation": delegation}
        await self.emit({**created, "offset_ms": int(self.timeline_ms)})
        deadline = asked + ANSWER_TIMEOUT_S
        while not self._answered.is_set() and not self._closed and time.monotonic() < deadline:
            await self._tick(False)  # the line stays open (silence) while the supervisor works
        if self._answered.is_set():
            self.times.answered.append((asked, self._answered_at))
        elif not self._closed:
            self.times.unanswered.append(asked)
        self._delegation = None
