"""What the simulated GPT-Live model hears, decides and says, from the scenario (deterministic).

Driven by :class:`simulator.live.LiveSession` (its host): input audio for the turn detector,
timeline advances, and the three context appends.

* **Caller turns**: an energy VAD on the input (500 ms of silence ends a turn). At a turn's
  end its text — the scenario's next turn (turns restored from ``session.start``'s ``input``
  count) — goes out as ``session.input_transcript.delta`` events of a few words each, spread
  over the speech on the timeline. Caller speech starting while the model speaks is a barge-in.
* **Chitchat** (``reply`` set): the model speaks the reply.
* **Factual turns**: ``session.delegation.created`` (target ``client``, ``offset_ms`` = where
  the turn was detected). The automatic acknowledgement — the turn's ``filler`` — is requested
  ``acknowledgement_delay_ms`` of timeline later (0: at once) unless any commentary or thinking
  append arrived meanwhile, which cancels every pending acknowledgement. With
  ``live_delegates: false`` there is no delegation: the model goes quiet (or says the filler,
  ``live_filler_without_delegation``).
* **Appends** are placed one after another on the timeline: an append received at ``T`` (or
  when the previous one ends) spans ``start_ms … end_ms`` = ``PLACE_BASE_MS +
  PLACE_MS_PER_TOKEN × tokens`` of timeline, and ``session.<kind>.appended`` comes when the
  timeline reaches ``end_ms``; a commentary is then spoken, thinking and instructions are
  silent. Spoken commentary text: the quoted text of ``Say exactly: "…"``, or of an instruction
  (first word say/tell/let/ask/inform/repeat/read) that quotes its words (``Tell the caller you
  are still checking: "Still checking on that."``); for a null-id commentary asking to greet
  (``greet…``) before any greeting, the scenario's greeting; otherwise the content as is.
* **Delegation ids**: commentary/thinking/instructions with an id this session did not create
  are refused (``invalid_value``, ``delegation_id``), and so are those for an *answered*
  delegation: one of whose commentary was spoken (fully or cut off) and the caller has since
  started speaking again. Until then any number of appends with its id are accepted
  (milestones, then the answer) — the real server places and speaks repeated commentary.
* Content over 500 tokens (``ceil(len / 4)``) is refused: ``invalid_value``, ``content``.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog

from simulator.live_audio import LiveFormat
from simulator.live_protocol import MAX_APPEND_TOKENS, LiveError, estimate_tokens, restored_user_turns
from simulator.live_record import LiveAppend, LiveCallerTurn, LiveDelegation, LiveSessionRecord, LiveUtterance
from simulator.live_speaker import Speaker
from simulator.realtime_items import new_id
from simulator.scenario import Turn
from simulator.state import SimulatorState
from simulator.vad import DEFAULT_SILENCE_MS, VadEvent

log = structlog.get_logger("simulator.live")

UNKNOWN_TURN = Turn(say="(unintelligible)", reply="Sorry, could you say that again?")
PLACE_BASE_MS = 500  # timeline an append takes to be placed (measured acks: 600-960 ms)
PLACE_MS_PER_TOKEN = 2
WORDS_PER_DELTA = 3  # caller transcript words per session.input_transcript.delta
_WORD = re.compile(r"\S+\s*")
_SAY_EXACTLY = re.compile(r"Say exactly:\s*[\"“](.+?)[\"”]", re.DOTALL)
# An instruction to say something (imperative first word) with the words in quotes.
_INSTRUCTION = re.compile(r"^\s*(say|tell|let|ask|inform|repeat|read)\b", re.IGNORECASE)
_QUOTED = re.compile(r"[\"“]([^\"”]+)[\"”]")
_GREET = re.compile(r"\bgreet", re.IGNORECASE)

Alarm = Callable[[], Awaitable[None]]


class LiveHost(Protocol):
    """What the model uses of its session (``LiveSession`` is one; a protocol, not an import)."""

    state: SimulatorState
    record: LiveSessionRecord
    config: dict[str, Any] | None
    fmt: LiveFormat | None
    speaker: Speaker | None
    closing: bool

    @property
    def timeline_ms(self) -> float: ...

    async def emit(self, event: dict[str, Any]) -> None: ...


def transcript_deltas(text: str, start_ms: int, end_ms: int) -> list[tuple[str, int, int]]:
    """``text`` as ``(delta, start_ms, end_ms)`` fragments spread over the speech by characters;
    the deltas carry their own spaces, so that their concatenation is ``text``."""
    words = _WORD.findall(text)
    groups = ["".join(words[i : i + WORDS_PER_DELTA]) for i in range(0, len(words), WORDS_PER_DELTA)]
    span, total, position, out = max(1, end_ms - start_ms), max(1, len(text)), 0, []
    for group in groups:
        start = start_ms + span * position // total
        position += len(group)
        out.append((group, start, start_ms + span * position // total))
    return out


class LiveModel:
    def __init__(self, host: LiveHost, start_config: dict[str, Any]) -> None:
        assert host.fmt is not None
        self.host = host
        self.vad = host.fmt.vad(silence_ms=DEFAULT_SILENCE_MS)
        self.turns_taken = restored_user_turns(start_config)
        self.greeted = False
        self.unplaced: list[LiveAppend] = []
        self._append_end_ms = 0
        self._alarms: list[tuple[float, int, Alarm]] = []
        self._alarm_seq = 0
        self._turn_start_ms = 0
        self._turn_barged = False

    @property
    def _speaker(self) -> Speaker:
        assert self.host.speaker is not None
        return self.host.speaker

    @property
    def _record(self) -> LiveSessionRecord:
        return self.host.record

    def _at(self, due_ms: float, alarm: Alarm) -> None:
        self._alarm_seq += 1
        heapq.heappush(self._alarms, (due_ms, self._alarm_seq, alarm))

    async def timeline_advanced(self) -> None:
        """Run what was waiting for the timeline to reach its position."""
        now = self.host.timeline_ms
        while self._alarms and self._alarms[0][0] <= now:
            await heapq.heappop(self._alarms)[2]()

    def _say(self, utterance: LiveUtterance) -> None:
        self._record.utterances.append(utterance)
        self._speaker.say(utterance)

    def utterance_finished(self, utterance: LiveUtterance) -> None:
        if utterance.kind == "commentary" and utterance.delegation_id is not None:
            delegation = self._record.delegations.get(utterance.delegation_id)
            if delegation is not None:
                delegation.spoken = True

    # --- caller turns --------------------------------------------------------------------

    async def hear(self, vad_bytes: bytes) -> None:
        for event in self.vad.feed(vad_bytes):
            await self._on_vad(event)

    async def _on_vad(self, event: VadEvent) -> None:
        if event.kind == "started":
            self._turn_start_ms = event.audio_ms
            self._turn_barged = self._speaker.speaking
            self._speaker.barge_in(event.audio_ms)
            self._speaker.hold(True)
            for delegation in self._record.delegations.values():
                if delegation.spoken:
                    delegation.answered = True
            return
        self._speaker.hold(False)
        if self.host.closing:
            return
        turns = self.host.state.scenario.turns
        turn = turns[self.turns_taken] if self.turns_taken < len(turns) else UNKNOWN_TURN
        self.turns_taken += 1
        caller_turn = LiveCallerTurn(
            number=self.turns_taken,
            say=turn.say,
            start_ms=self._turn_start_ms,
            end_ms=event.audio_ms - self.vad.silence_ms,
            detected_ms=event.audio_ms,
            barged_in=self._turn_barged,
        )
        self._record.caller_turns.append(caller_turn)
        for delta, start_ms, end_ms in transcript_deltas(turn.say, caller_turn.start_ms, caller_turn.end_ms):
            await self.host.emit(
                {
                    "type": "session.input_transcript.delta",
                    "delta": delta,
                    "start_ms": start_ms,
                    "end_ms": end_ms,
                }
            )
        log.info(
            "simulator.live.caller_turn",
            live_session_id=self._record.id,
            turn=caller_turn.number,
            barged_in=caller_turn.barged_in,
        )
        if turn.reply:
            self._say(LiveUtterance("reply", turn.reply))
        elif turn.live_delegates:
            await self._delegate(turn, caller_turn)
        elif turn.live_filler_without_delegation:
            self._say(LiveUtterance("filler", turn.filler))

    async def _delegate(self, turn: Turn, caller_turn: LiveCallerTurn) -> None:
        assert self.host.config is not None
        settings = self.host.config["delegation"]
        delegation = LiveDelegation(
            id=new_id("dlg"), turn=caller_turn.number, say=turn.say, offset_ms=caller_turn.detected_ms
        )
        self._record.delegations[delegation.id] = delegation
        caller_turn.delegation_id = delegation.id
        body = {"id": delegation.id, "target": settings["type"], "type": "delegation"}
        await self.host.emit(
            {"type": "session.delegation.created", "delegation": body, "offset_ms": delegation.offset_ms}
        )
        log.info(
            "simulator.live.delegation_created", live_session_id=self._record.id, delegation_id=delegation.id
        )
        if settings["type"] != "client":
            return  # Responses / Decisions delegation: not played by the simulator

        async def acknowledge() -> None:
            if delegation.acknowledgement == "pending":
                delegation.acknowledgement = "requested"
                self._say(LiveUtterance("acknowledgement", turn.filler, delegation.id))

        self._at(delegation.offset_ms + (settings.get("acknowledgement_delay_ms") or 0), acknowledge)

    # --- context appends -----------------------------------------------------------------

    async def append(self, data: dict[str, Any]) -> None:
        """A commentary / thinking / instructions append (validated, session started)."""
        assert self.host.config is not None
        kind = data["type"].split(".")[1]
        content, delegation_id = data["content"], data.get("delegation_id")
        if estimate_tokens(content) > MAX_APPEND_TOKENS:
            message = f"Context append text must not exceed {MAX_APPEND_TOKENS} tokens."
            raise LiveError("invalid_value", message, "content")
        delegation = self._delegation(delegation_id) if delegation_id is not None else None
        if kind in ("commentary", "thinking"):
            for pending in self._record.delegations.values():
                if pending.acknowledgement == "pending":
                    pending.acknowledgement = "cancelled"
            if delegation is not None:
                (delegation.commentary if kind == "commentary" else delegation.thinking).append(content)
        now = int(self.host.timeline_ms)
        start = max(now, self._append_end_ms)
        end = start + PLACE_BASE_MS + PLACE_MS_PER_TOKEN * estimate_tokens(content)
        event_id = data.get("event_id")
        append = LiveAppend(
            kind, content, delegation_id, now, start, end, event_id if isinstance(event_id, str) else None
        )
        self._append_end_ms = end
        self._record.appends.append(append)
        self.unplaced.append(append)

        async def place() -> None:
            append.placed = True
            self.unplaced.remove(append)
            echo = {"client_event_id": append.client_event_id} if append.client_event_id else {}
            placed = {"start_ms": append.start_ms, "end_ms": append.end_ms, **echo}
            await self.host.emit({"type": f"session.{kind}.appended", **placed})
            if kind == "commentary":
                self._say(self._speech_for(append))

        self._at(end, place)

    def _delegation(self, delegation_id: str) -> LiveDelegation:
        assert self.host.config is not None
        if self.host.config["delegation"]["type"] == "responses":
            message = "A non-null delegation_id is not accepted with Responses delegation."
            raise LiveError("invalid_value", message, "delegation_id")
        delegation = self._record.delegations.get(delegation_id)
        if delegation is None:
            raise LiveError("invalid_value", f"Unknown delegation_id '{delegation_id}'.", "delegation_id")
        if delegation.answered:
            message = f"Delegation '{delegation_id}' has already been answered."
            raise LiveError("invalid_value", message, "delegation_id")
        return delegation

    def _speech_for(self, append: LiveAppend) -> LiveUtterance:
        content = append.content.strip()
        match = _SAY_EXACTLY.search(content) or (_INSTRUCTION.match(content) and _QUOTED.search(content))
        if match:
            return LiveUtterance("commentary", match.group(1).strip(), append.delegation_id)
        if append.delegation_id is None and not self.greeted and _GREET.search(content):
            self.greeted = True
            return LiveUtterance("greeting", self.host.state.scenario.greeting)
        return LiveUtterance("commentary", content, append.delegation_id)
