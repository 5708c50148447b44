"""The hand-overs of one GPT-Live session: how many run at once, and which answers are stale.

GPT-Live may delegate as often as it likes (a caller repeating a question, a model that
delegates every fragment). Each hand-over is a supervisor run, so a session keeps at most
``max_running`` of them with the supervisor at once:

* a delegation for the caller turn of a running hand-over **joins** it: it is answered with
  that hand-over's answer (one supervisor run per turn, never two);
* past the limit, a delegation for another turn **waits** for a place and is handed over when a
  running one is answered. Only the newest waits: a waiting one that a newer delegation
  replaces is **superseded** (the caller has moved on) and never runs;
* an answer for a turn older than the newest hand-over's is **stale** (the caller has moved
  on): the engine drops it and logs it, as a Realtime answer whose reply was cancelled.

The caller turn is the caller item the hand-over answers (None when the engine knew none).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from structlog.typing import FilteringBoundLogger

from callrecord.decisions import Trigger

MAX_RUNNING_DEFAULT: Final = 2
Admission = Literal["start", "joined", "queued"]


@dataclass
class Running:
    turn: str | None
    joined: list[str] = field(default_factory=list)  # delegations answered with its answer


@dataclass(frozen=True)
class Waiting:
    handover_id: str
    turn: str | None
    trigger: Trigger


class DelegationBook:
    def __init__(self, log: FilteringBoundLogger, max_running: int = MAX_RUNNING_DEFAULT) -> None:
        self.log = log
        self.max_running = max(1, max_running)
        self.running: dict[str, Running] = {}
        self.waiting: Waiting | None = None
        self.newest_turn: str | None = None  # the caller turn of the newest hand-over

    def admit(self, handover_id: str, turn: str | None, trigger: Trigger) -> Admission:
        """Whether a new hand-over starts now, joins a running one or waits for a place."""
        if turn is not None:
            for running_id, running in self.running.items():
                if running.turn == turn:
                    running.joined.append(handover_id)
                    self.log.info("gpt_live.delegation_joined", tool_call_id=handover_id, joined=running_id)
                    return "joined"
        self.newest_turn = turn
        if len(self.running) < self.max_running:
            self.running[handover_id] = Running(turn)
            return "start"
        if self.waiting is not None:
            self.log.warning("gpt_live.delegation_superseded", tool_call_id=self.waiting.handover_id,
                             by=handover_id)  # fmt: skip
        self.waiting = Waiting(handover_id, turn, trigger)
        self.log.warning("gpt_live.delegation_queued", tool_call_id=handover_id, running=len(self.running))
        return "queued"

    def finish(self, handover_id: str) -> tuple[list[str], bool]:
        """A hand-over's answer came: the delegations that joined it, and whether it is stale."""
        running = self.running.pop(handover_id, None)
        if running is None:  # not this session's (resumed), or recovered before this book knew it
            return [], False
        stale = running.turn is not None and running.turn != self.newest_turn
        return running.joined, stale

    def next_waiting(self) -> Waiting | None:
        """The waiting hand-over, once a place is free (it runs now)."""
        waiting = self.waiting
        if waiting is None or len(self.running) >= self.max_running:
            return None
        self.waiting = None
        self.running[waiting.handover_id] = Running(waiting.turn)
        return waiting

    def newest_running(self) -> str | None:
        """The hand-over a progress note is about: the newest still with the supervisor."""
        return next(reversed(self.running), None)
