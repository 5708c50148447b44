"""Probe mode of the simulator: a cheap, timed realtime model for load measurements (off by default).

``responder simulate --probe`` swaps each realtime session for a :class:`ProbeSession`, which
does what a load test needs and little else, so that the simulator is never the bottleneck:

* caller audio (``input_audio_buffer.append``) is not validated, decoded or run through turn
  detection: only the *stamp* in the first bytes of the μ-law payload is read — the load
  generator's caller writes its call tag, a frame sequence number and its ``time.monotonic()``
  there (CLOCK_MONOTONIC: comparable across processes on one Linux host);
* the model talks on its own schedule: a response of :data:`TALK_MS` of audio in deltas of
  :attr:`ProbeConfig.delta_ms` (100 ms by default, 20 ms as some deployments stream),
  paced in real time, each delta stamped the same way; every
  :attr:`ProbeConfig.barge_in_every`-th response is barged in on
  (``input_audio_buffer.speech_started`` while the audio still plays at the caller); then a
  short user turn (speech stopped, committed, transcribed) and the next response, as turn
  detection would start it;
* every :attr:`ProbeConfig.supervisor_every`-th user turn is handed over instead: the
  response is a ``getNextResponseFromSupervisor`` function call, streamed as the Realtime API
  streams one (``response.output_item.added``, ``response.function_call_arguments.delta`` /
  ``.done``, ``response.output_item.done``, ``response.done``); the service runs its real
  supervisor and answers with a ``function_call_output`` item and a ``response.create``, which
  the probe speaks (a ``response.create`` before the output, a hold line, gets a short one).

Everything it sends or receives is timestamped per call tag and summed up for a time window
at ``GET /_probe?t0=…&t1=…`` (monotonic seconds): caller→model relay latency percentiles and
frame counts, model deltas sent, barge-in times, hand-overs and the time from each hand-over
to the ``response.create`` that speaks its answer. The caller side measures the rest.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import struct
import time
from array import array
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import structlog
from aiohttp import WSMsgType, web

from simulator.realtime_items import assistant_item, function_call_item, new_id, user_audio_item
from simulator.realtime_protocol import apply_session_update, default_session
from simulator.realtime_response import SUPERVISOR_TOOL

log = structlog.get_logger("simulator.probe")

MAGIC = b"\xa5LG1"
STAMP = struct.Struct("<4sHId")  # magic, call tag, sequence number, monotonic send time
STAMP_CHARS = 24  # the stamp's 18 bytes are exactly the first 24 base64 characters
UNKNOWN_TAG = 0xFFFF
APPEND_PREFIX = '{"type":"input_audio_buffer.append","audio":"'
DELTAS_MS: Final = (20, 100)  # audio per response.output_audio.delta, the choices
LEAD_MS = 300  # the model runs this far ahead of real time, as the real one does
TALK_MS = 4000  # audio per response
HOLD_MS = 1000  # audio of a response asked for while a hand-over waits (a hold line)
BARGE_IN_AT_MS = 1500  # wall time into a barged-in response when the caller talks over it
USER_TURN_MS = 1200  # how long the simulated caller speaks
PAUSE_MS = 800  # after a response is heard out, before the caller speaks
ANSWER_TIMEOUT_S = 15.0  # a hand-over not answered by then is counted and the talk goes on


@dataclass(frozen=True)
class ProbeConfig:
    """How the probe model talks; one per simulator (``responder simulate --probe …``)."""

    delta_ms: int = 100  # one of DELTAS_MS
    barge_in_every: int = 2  # every Nth response is barged in on; 0: never
    supervisor_every: int = 0  # every Nth user turn is handed over to the supervisor; 0: never

    def __post_init__(self) -> None:
        if self.delta_ms not in DELTAS_MS:
            raise ValueError(f"delta_ms must be one of {DELTAS_MS}, not {self.delta_ms}")
        if self.barge_in_every < 0 or self.supervisor_every < 0:
            raise ValueError("barge_in_every and supervisor_every must be >= 0")

    def barged_in(self, response_no: int) -> bool:
        """Response ``response_no`` (0: the greeting) is talked over."""
        every = self.barge_in_every
        return every > 0 and response_no % every == every - 1

    def hands_over(self, user_turn: int) -> bool:
        """User turn ``user_turn`` (1: the first) is answered through the supervisor tool."""
        return self.supervisor_every > 0 and user_turn % self.supervisor_every == 0


def stamp(tag: int, seq: int, sent: float) -> bytes:
    return STAMP.pack(MAGIC, tag, seq, sent)


def read_stamp(b64_head: str) -> tuple[int, int, float] | None:
    """``(tag, seq, sent)`` from the first :data:`STAMP_CHARS` base64 characters, if stamped."""
    try:
        raw = binascii.a2b_base64(b64_head[:STAMP_CHARS])
    except (binascii.Error, ValueError):
        return None
    if len(raw) < STAMP.size or raw[:4] != MAGIC:
        return None
    _, tag, seq, sent = STAMP.unpack_from(raw)
    return tag, seq, sent


def stamped_audio(tag: int, seq: int, size: int, fill: bytes = b"\xff") -> tuple[str, float]:
    """``size`` bytes of μ-law silence stamped now, as base64; and the stamp's time."""
    sent = time.monotonic()
    return base64.b64encode(stamp(tag, seq, sent) + fill * (size - STAMP.size)).decode("ascii"), sent


def delta_head(response_id: str, item_id: str) -> str:
    """A ``response.output_audio.delta`` as the probe writes it, up to the audio: compact, the
    API's fields, the ``event_id`` last (:func:`delta_tail`)."""
    return (
        '{"type":"response.output_audio.delta","response_id":"' + response_id + '","item_id":"'
        + item_id + '","output_index":0,"content_index":0,"delta":"'
    )  # fmt: skip


def delta_tail(event_id: str) -> str:
    return '","event_id":"' + event_id + '"}'


def percentiles(values: Iterable[float]) -> dict[str, float | int]:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0}

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {"n": len(ordered), "p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": round(ordered[-1], 3)}


@dataclass
class TagTimes:
    """What the simulator saw of one call (one stamp tag)."""

    in_sent: array[float] = field(default_factory=lambda: array("d"))  # caller's send time
    in_latency_ms: array[float] = field(default_factory=lambda: array("d"))
    out_sent: array[float] = field(default_factory=lambda: array("d"))  # our delta send times
    barge_ins: list[float] = field(default_factory=list)  # speech_started send times
    handovers: list[float] = field(default_factory=list)  # function_call_arguments.done send times
    answered: list[tuple[float, float]] = field(default_factory=list)  # (hand-over, answer asked)
    unanswered: list[float] = field(default_factory=list)  # hand-overs given up on
    hold_lines: int = 0
    # (receive time, where the truncation falls on its session's delta timeline in ms: the audio
    # of delta seq n spans [(n - 1) × delta_ms, n × delta_ms)), for the heard-vs-truncated check
    truncations: list[tuple[float, float]] = field(default_factory=list)
    unmapped_truncations: int = 0  # for an item this session never spoke, or no integer end


@dataclass
class ProbeRecorder:
    config: ProbeConfig = field(default_factory=ProbeConfig)
    tags: dict[int, TagTimes] = field(default_factory=dict)
    sessions: int = 0

    def of(self, tag: int) -> TagTimes:
        times = self.tags.get(tag)
        if times is None:
            times = self.tags[tag] = TagTimes()
        return times

    def report(self, t0: float, t1: float) -> dict[str, Any]:
        calls: dict[str, Any] = {}
        latencies: list[float] = []
        asked = hold_lines = unanswered = 0
        answer_ms: list[float] = []
        for tag, times in self.tags.items():
            asked += sum(1 for t in times.handovers if t0 <= t <= t1)
            unanswered += sum(1 for t in times.unanswered if t0 <= t <= t1)
            answer_ms += [(a - h) * 1000 for h, a in times.answered if t0 <= h <= t1]
            hold_lines += times.hold_lines
            got = [
                ms for sent, ms in zip(times.in_sent, times.in_latency_ms, strict=True) if t0 <= sent <= t1
            ]
            latencies += got
            calls[str(tag)] = {
                "in_received": len(got),
                "out_sent": sum(1 for sent in times.out_sent if t0 <= sent <= t1),
                "barge_ins": [t for t in times.barge_ins if t0 <= t <= t1],
                "truncations": [(t, ms) for t, ms in times.truncations if t0 <= t <= t1],
                "unmapped_truncations": times.unmapped_truncations,  # whole run
            }
        handovers = {
            "asked": asked,
            "answered": len(answer_ms),
            "unanswered": unanswered,  # given up on after ANSWER_TIMEOUT_S
            "pending": asked - len(answer_ms) - unanswered,  # neither yet
            "answer_ms": percentiles(answer_ms),  # hand-over → the response.create speaking it
            "hold_lines": hold_lines,  # all sessions, whole run
        }
        return {
            "sessions": self.sessions,
            "config": asdict(self.config),
            "in_latency_ms": percentiles(latencies),
            "handovers": handovers,
            "calls": calls,
        }


class ProbeSocket:
    """What both engines' probe sessions share: the socket's read loop, event ids, sending,
    and the stamps of caller audio filed under the call they name."""

    def __init__(self, ws: web.WebSocketResponse, recorder: ProbeRecorder) -> None:
        self.ws = ws
        self.recorder = recorder
        self.tag = UNKNOWN_TAG
        self.times = recorder.of(UNKNOWN_TAG)
        self._driver: asyncio.Task[None] | None = None  # the model's side of the conversation
        self._event_prefix = new_id("event") + "_"
        self._event_seq = 0
        self._closed = False

    async def opened(self) -> None:
        """What the server says first (nothing by default)."""

    async def on_text(self, text: str) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        self.recorder.sessions += 1
        await self.opened()
        try:
            async for msg in self.ws:
                if msg.type == WSMsgType.TEXT:
                    await self.on_text(msg.data)
        finally:
            self._closed = True
            if self._driver is not None:
                self._driver.cancel()
                await asyncio.gather(self._driver, return_exceptions=True)

    def _event_id(self) -> str:
        self._event_seq += 1
        return self._event_prefix + str(self._event_seq)

    async def emit(self, event: dict[str, Any]) -> None:
        await self.emit_text(json.dumps({"event_id": self._event_id(), **event}, separators=(",", ":")))

    async def emit_text(self, text: str) -> None:
        if self._closed or self.ws.closed:
            return
        try:
            await self.ws.send_str(text)
        except (ConnectionError, RuntimeError):
            self._closed = True

    def _stamped(self, head: str, received: float) -> None:
        """File the stamp in ``head`` (caller audio's first base64 characters), if it has one."""
        found = read_stamp(head)
        if found is None:
            return
        tag, _, sent = found
        if tag != self.tag:  # the first stamped frame names the call
            self.tag, self.times = tag, self.recorder.of(tag)
        self.times.in_sent.append(sent)
        self.times.in_latency_ms.append((received - sent) * 1000)


class ProbeSession(ProbeSocket):
    """One realtime WebSocket in probe mode (see the module docstring)."""

    def __init__(self, ws: web.WebSocketResponse, recorder: ProbeRecorder, *, model: str) -> None:
        super().__init__(ws, recorder)
        self.config = recorder.config
        self.session = default_session(model)
        self._seq = 0
        self._first_seq: dict[str, int] = {}  # item id → the seq of its first delta (this session)
        self._user_item_id: str | None = None
        self._requests: asyncio.Queue[dict[str, Any]] = asyncio.Queue()  # response.create bodies
        self._outputs = 0  # function_call_output items received

    async def opened(self) -> None:
        await self.emit({"type": "session.created", "session": self.session})

    async def on_text(self, text: str) -> None:
        if text.startswith(APPEND_PREFIX):  # the hot path: read the stamp, nothing else
            self._appended(text[len(APPEND_PREFIX) : len(APPEND_PREFIX) + STAMP_CHARS])
            return
        try:
            data = json.loads(text)
            kind = data["type"]
        except (ValueError, KeyError, TypeError):
            log.warning("simulator.probe.event_invalid", sample=text[:80])
            return
        if kind == "input_audio_buffer.append":
            self._appended(str(data.get("audio", "")))
        elif kind == "session.update":
            self.session = apply_session_update(self.session, data.get("session") or {})
            await self.emit({"type": "session.updated", "session": self.session})
        elif kind == "response.create":
            body = data.get("response") or {}
            if self._driver is None:
                self._driver = asyncio.create_task(self._converse(body))
            else:  # an answer (or a hold line) while a hand-over waits; else unused
                self._requests.put_nowait(body)
        elif kind == "conversation.item.create":
            await self._item_created(data.get("item") or {})
        elif kind == "conversation.item.truncate":
            fields = {k: data.get(k) for k in ("item_id", "content_index", "audio_end_ms")}
            self._truncated(fields["item_id"], fields["audio_end_ms"])
            await self.emit({"type": "conversation.item.truncated", **fields})

    def _truncated(self, item_id: Any, audio_end_ms: Any) -> None:
        """Filed under the call's tag as known now (the greeting starts before any stamped
        caller audio names it)."""
        first = self._first_seq.get(item_id) if isinstance(item_id, str) else None
        if first is None or type(audio_end_ms) is not int:
            self.times.unmapped_truncations += 1
            return
        at_ms = (first - 1) * self.config.delta_ms + audio_end_ms
        self.times.truncations.append((time.monotonic(), float(at_ms)))

    def _appended(self, head: str) -> None:
        self._stamped(head, time.monotonic())

    async def _item_created(self, item: dict[str, Any]) -> None:
        item = {**item, "id": item.get("id") or new_id("item"), "object": "realtime.item"}
        item["status"] = item.get("status") or "completed"
        if item.get("type") == "function_call_output":
            self._outputs += 1
        await self.emit({"type": "conversation.item.added", "item": item})
        await self.emit({"type": "conversation.item.done", "item": item})

    # -- the model's side of the conversation ------------------------------------------------
    async def _converse(self, first: dict[str, Any]) -> None:
        metadata = first.get("metadata")
        response_no = user_turn = 0
        while not self._closed:
            barge_in = self.config.barged_in(response_no)
            await self._respond(metadata, barge_in)
            response_no += 1
            metadata = None  # later responses are started by "turn detection"
            if not barge_in:
                await asyncio.sleep((LEAD_MS + PAUSE_MS) / 1000)  # heard out, then the caller talks
                await self.emit(self._speech("started"))
            await self._user_turn(user_turn)
            user_turn += 1
            if self.config.hands_over(user_turn):
                await self._hand_over(user_turn)
                metadata = await self._await_answer()  # the answer's response is the next one

    def _speech(self, edge: str) -> dict[str, Any]:
        return {"type": f"input_audio_buffer.speech_{edge}", "item_id": self._user_item, "audio_start_ms": 0}

    async def _user_turn(self, turn: int) -> None:
        await asyncio.sleep(USER_TURN_MS / 1000)
        item_id = self._user_item
        await self.emit({"type": "input_audio_buffer.speech_stopped", "item_id": item_id, "audio_end_ms": 0})
        await self.emit(
            {"type": "input_audio_buffer.committed", "item_id": item_id, "previous_item_id": None}
        )
        await self.emit({"type": "conversation.item.added", "item": user_audio_item(item_id)})
        text = f"Probe turn {turn}."
        done = {"type": "conversation.item.input_audio_transcription.completed", "item_id": item_id}
        usage = {"type": "duration", "seconds": USER_TURN_MS / 1000}
        await self.emit({**done, "content_index": 0, "transcript": text, "usage": usage})
        self._user_item_id = None

    @property
    def _user_item(self) -> str:
        if self._user_item_id is None:
            self._user_item_id = new_id("item")
        return self._user_item_id

    async def _hand_over(self, user_turn: int) -> None:
        """A response that is one ``getNextResponseFromSupervisor`` call, as the Realtime API
        streams it; the caller's words are the tool's argument."""
        while not self._requests.empty():  # requests from before the hand-over are not its answer
            self._requests.get_nowait()
        response_id, item_id, call_id = new_id("resp"), new_id("item"), new_id("call")
        response = {"id": response_id, "object": "realtime.response", "status": "in_progress"}
        await self.emit({"type": "response.created", "response": {**response, "metadata": None}})
        ids = {"response_id": response_id, "output_index": 0}
        item = function_call_item(item_id, call_id, SUPERVISOR_TOOL, "", "in_progress")
        await self.emit({"type": "response.output_item.added", **ids, "item": item})
        await self.emit({"type": "conversation.item.added", "item": item})
        arguments = json.dumps({"relevantContextFromLastUserMessage": f"Probe turn {user_turn - 1}."})
        call = {**ids, "item_id": item_id, "call_id": call_id}
        half = len(arguments) // 2
        for piece in (arguments[:half], arguments[half:]):
            await self.emit({"type": "response.function_call_arguments.delta", **call, "delta": piece})
        self.times.handovers.append(time.monotonic())
        done_args = {"type": "response.function_call_arguments.done", **call}
        await self.emit({**done_args, "name": SUPERVISOR_TOOL, "arguments": arguments})
        done = function_call_item(item_id, call_id, SUPERVISOR_TOOL, arguments, "completed")
        await self.emit({"type": "response.output_item.done", **ids, "item": done})
        await self.emit({"type": "conversation.item.done", "item": done})
        finished = {**response, "status": "completed", "output": [done]}
        await self.emit({"type": "response.done", "response": finished})

    async def _await_answer(self) -> Any:
        """Wait for the ``response.create`` that follows the hand-over's output; speak a short
        hold line for one that comes before it. Returns the answer's metadata."""
        asked, outputs = self.times.handovers[-1], self._outputs
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ANSWER_TIMEOUT_S
        while not self._closed:
            try:
                body = await asyncio.wait_for(self._requests.get(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                self.times.unanswered.append(asked)
                return None
            if self._outputs > outputs:
                self.times.answered.append((asked, time.monotonic()))
                return body.get("metadata")
            self.times.hold_lines += 1
            await self._respond(body.get("metadata"), False, HOLD_MS, in_conversation=False)
        return None

    async def _respond(
        self, metadata: Any, barge_in: bool, talk_ms: int = TALK_MS, *, in_conversation: bool = True
    ) -> None:
        response_id, item_id = new_id("resp"), new_id("item")
        response = {"id": response_id, "object": "realtime.response", "status": "in_progress"}
        await self.emit({"type": "response.created", "response": {**response, "metadata": metadata}})
        if in_conversation:
            item = assistant_item(item_id, "in_progress")
            await self.emit({"type": "conversation.item.added", "item": item})
        head = delta_head(response_id, item_id)
        loop = asyncio.get_running_loop()
        started = loop.time()
        t0 = started - LEAD_MS / 1000
        delta_ms = self.config.delta_ms
        delta_bytes = delta_ms * 8
        status, sent_ms = "completed", 0
        self._first_seq[item_id] = self._seq + 1
        for n in range(talk_ms // delta_ms):
            due = t0 + n * delta_ms / 1000
            if barge_in and due - started >= BARGE_IN_AT_MS / 1000:
                await asyncio.sleep(max(0.0, started + BARGE_IN_AT_MS / 1000 - loop.time()))
                self.times.barge_ins.append(time.monotonic())
                await self.emit(self._speech("started"))
                status = "cancelled"
                break
            await asyncio.sleep(max(0.0, due - loop.time()))
            self._seq += 1
            delta, sent = stamped_audio(self.tag, self._seq, delta_bytes)
            self.times.out_sent.append(sent)
            await self.emit_text(head + delta + delta_tail(self._event_id()))
            sent_ms += delta_ms
        transcript = "probe " * (sent_ms // 500)
        ids = {"response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0}
        await self.emit({"type": "response.output_audio_transcript.done", **ids, "transcript": transcript})
        item = assistant_item(item_id, "completed" if status == "completed" else "incomplete", transcript)
        if in_conversation:
            await self.emit({"type": "conversation.item.done", "item": item})
        await self.emit({"type": "response.done", "response": {**response, "status": status}})


PROBE_KEY: web.AppKey[ProbeRecorder] = web.AppKey("probe_recorder", ProbeRecorder)


async def probe_report(request: web.Request) -> web.Response:
    try:
        t0 = float(request.query.get("t0", "0"))
        t1 = float(request.query.get("t1", "inf"))
    except ValueError:
        return web.json_response({"error": "t0 and t1 must be numbers"}, status=400)
    return web.json_response(request.app[PROBE_KEY].report(t0, t1))


def add_probe_routes(app: web.Application, config: ProbeConfig | None = None) -> None:
    app[PROBE_KEY] = ProbeRecorder(config or ProbeConfig())
    app.router.add_get("/_probe", probe_report)
