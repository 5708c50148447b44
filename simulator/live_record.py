"""What the GPT-Live double records per session, for tests to read (``SimulatorState.live_sessions``).

Times ``*_ms`` are on the session timeline: milliseconds of input audio appended since
``session.start`` (see :mod:`simulator.live`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# Why the model said something: the scenario's greeting (asked for by a null commentary), a
# chitchat reply, the automatic acknowledgement of a delegation (the turn's filler), a filler
# of a turn it did not delegate, appended commentary (a delegation's answer or null-id
# context), or an audio fixture (no text).
UtteranceKind = Literal["greeting", "reply", "acknowledgement", "filler", "commentary", "fixture"]
AckStatus = Literal["pending", "requested", "cancelled"]


@dataclass
class LiveUtterance:
    """One utterance on the output track."""

    kind: UtteranceKind
    text: str
    delegation_id: str | None = None
    audio_ms: int = 0  # its full length
    start_ms: int | None = None  # timeline position of its first audio
    end_ms: int | None = None  # … and of the end of what was said
    said: str = ""  # the words whose audio was sent (started)
    transcribed: str = ""  # the words sent as output transcript deltas (a little ahead of the audio)
    said_ms: int = 0  # the audio sent
    cut: bool = False  # stopped early (barge-in, fixture)
    done: bool = False


@dataclass
class LiveCallerTurn:
    """A caller turn detected on the input audio, matched to the scenario's next turn."""

    number: int  # 1-based, scenario order (turns restored from ``input`` count)
    say: str
    start_ms: int
    end_ms: int  # end of the speech
    detected_ms: int  # where the turn was detected (end + the detector's silence)
    barged_in: bool = False  # the caller started while the model was speaking
    delegation_id: str | None = None  # the delegation the model created for it, if any


@dataclass
class LiveDelegation:
    id: str
    turn: int  # LiveCallerTurn.number
    say: str
    offset_ms: int
    acknowledgement: AckStatus = "pending"
    commentary: list[str] = field(default_factory=list)
    thinking: list[str] = field(default_factory=list)
    # Some commentary of it was spoken (fully or cut off) …
    spoken: bool = False
    # … and the caller has started speaking since: further appends for it are refused.
    answered: bool = False


@dataclass
class LiveAppend:
    """A commentary / thinking / instructions append, from receipt to placement."""

    kind: Literal["commentary", "thinking", "instructions"]
    content: str
    delegation_id: str | None
    received_ms: int
    start_ms: int  # placement on the timeline: start_ms … end_ms (the ack comes at end_ms)
    end_ms: int
    client_event_id: str | None = None
    placed: bool = False


@dataclass
class LiveSessionRecord:
    """One primary Live WebSocket session, as the simulator saw and played it."""

    id: str
    config: dict[str, Any] | None = None  # the resolved SessionResource of session.started
    started: bool = False
    closed_reason: str | None = None  # close_requested | connection_lost
    timeline_ms: float = 0.0
    caller_turns: list[LiveCallerTurn] = field(default_factory=list)
    delegations: dict[str, LiveDelegation] = field(default_factory=dict)
    appends: list[LiveAppend] = field(default_factory=list)
    utterances: list[LiveUtterance] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)  # error events sent

    def spoken(self, kind: UtteranceKind | None = None) -> list[str]:
        """What the model said (the words sent), in order; only ``kind`` when given."""
        return [u.said.strip() for u in self.utterances if u.said and kind in (None, u.kind)]

    def appended(self, kind: Literal["commentary", "thinking", "instructions"]) -> list[LiveAppend]:
        return [a for a in self.appends if a.kind == kind]
