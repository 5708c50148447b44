"""The seam between the call controller and a speech engine (DESIGN.md §4b).

The controller never sees an engine's wire protocol. An engine (Realtime GA today; GPT-Live
next) turns its server events into the small typed events below and carries out the
controller's commands (:class:`Engine`). What differs between engines stays behind this
line: Realtime's hand-over is a tool call answered with ``function_call_output`` +
``response.create``; Live's is ``session.delegation.created`` answered with
``session.commentary.append``. Both arrive here as :class:`HandoverRequested` and leave as
:meth:`Engine.answer_handover`.

Events are frozen dataclasses with slots: one small allocation per event, no validation, so
that the audio hot path (:class:`AgentAudio`, base64 text passed through as it came) stays
cheap. Shape checks happen once, in the engine, before an event is built.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

from callrecord.decisions import Trigger
from callrecord.history import HistoryItem

EngineName = Literal["realtime", "live"]
ENGINES: Final[tuple[EngineName, ...]] = ("realtime", "live")


def engine_named(value: object, default: EngineName) -> EngineName:
    """The engine a call asked for (a TwiML parameter, a query parameter), else ``default``."""
    return next((name for name in ENGINES if name == value), default)

# Why the controller asked for a reply (Realtime: the response's metadata ``purpose``).
Purpose = Literal["greeting", "answer", "hold_line", "action_line", "turn"]
GREETING: Final = "greeting"  # the call's first words
ANSWER: Final = "answer"  # speaking a hand-over's answer (a supervisor decision, a tool error)
HOLD_LINE: Final = "hold_line"  # "still checking", out of band, while the supervisor works
ACTION_LINE: Final = "action_line"  # the line before a transfer or hang-up
TURN: Final = "turn"  # a reply the engine started by itself (turn detection)
PURPOSES: Final[tuple[Purpose, ...]] = (GREETING, ANSWER, HOLD_LINE, ACTION_LINE, TURN)

ItemKind = Literal["message", "function_call", "function_call_output"]
Role = Literal["user", "assistant", "system"]


# -- events in ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SessionReady:
    """The engine accepted the session configuration: the call can begin."""


@dataclass(frozen=True, slots=True)
class CallerSpeechStarted:
    """The caller started speaking (barge-in when the agent is playing). ``over``: the agent's
    item the engine knows it is speaking at that moment (GPT-Live: its real-time track), which
    plays even when the caller's buffer ran dry between two of its chunks."""

    over: str | None = None


@dataclass(frozen=True, slots=True)
class CallerSpeechStopped:
    """The caller stopped speaking; the engine will usually reply by itself shortly."""


@dataclass(frozen=True, slots=True)
class ConversationItem:
    id: str
    kind: ItemKind
    role: Role
    text: str | None = None
    name: str | None = None  # function calls: the tool
    tool_call_id: str | None = None  # function calls and their outputs
    arguments: str | None = None
    output: str | None = None


@dataclass(frozen=True, slots=True)
class ItemAdded:
    """An item joined the engine's conversation. ``after`` places it in the history:
    an item id, :data:`~callrecord.history.HEAD` (first) or :data:`~callrecord.history.APPEND`."""

    item: ConversationItem
    after: str


@dataclass(frozen=True, slots=True)
class CallerTranscript:
    item_id: str
    text: str


@dataclass(frozen=True, slots=True)
class CallerTranscriptFailed:
    item_id: str
    error: object = None


@dataclass(frozen=True, slots=True)
class AgentTruncated:
    """The engine cut the agent's item off itself (SIP/WebRTC, where audio bypasses us), or
    confirmed a :meth:`Engine.stop_speaking`."""

    item_id: str
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class Dtmf:
    digit: str


@dataclass(frozen=True, slots=True)
class ReplyStarted:
    """A reply began. ``purpose`` is what the controller asked it for; None when the engine
    started it on its own."""

    reply_id: str
    purpose: str | None


@dataclass(frozen=True, slots=True)
class ReplyEnded:
    reply_id: str
    status: str | None  # completed | cancelled | failed | incomplete
    reason: str | None = None
    usage: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class AgentAudio:
    """Hot path: one chunk of agent audio, base64 in the call's format, never decoded."""

    item_id: str
    reply_id: str | None
    audio: str


@dataclass(frozen=True, slots=True)
class AgentTranscriptDelta:
    item_id: str
    delta: str


@dataclass(frozen=True, slots=True)
class AgentTranscriptDone:
    item_id: str
    text: str


@dataclass(frozen=True, slots=True)
class HandoverRequested:
    """The engine hands the turn over: the supervisor tool (Realtime) or a call-control tool.
    ``handover_id`` is what the answer must carry (Realtime: the tool call id)."""

    handover_id: str
    tool: str | None
    arguments: str
    item_id: str | None = None
    trigger: Trigger = "tool_call"
    user_item_id: str | None = None  # the caller turn it answers, when the engine knows (else the last)


@dataclass(frozen=True, slots=True)
class EngineError:
    """The engine's server refused something; ``client_event_type`` is what we had sent."""

    code: object = None
    error_type: object = None
    message: object = None
    param: object = None
    client_event_id: str | None = None
    client_event_type: str | None = None


# (item id, reply id, base64 audio) → True when relayed there and then (Engine.take_audio)
AudioNow = Callable[[str, str | None, str], bool]

EngineEvent = (
    SessionReady | CallerSpeechStarted | CallerSpeechStopped | ItemAdded | CallerTranscript
    | CallerTranscriptFailed | AgentTruncated | Dtmf | ReplyStarted | ReplyEnded | AgentAudio
    | AgentTranscriptDelta | AgentTranscriptDone | HandoverRequested | EngineError
)  # fmt: skip


@dataclass(frozen=True)
class Restored:
    """What :meth:`Engine.restore` put back into a new session."""

    item_ids: frozenset[str] = frozenset()
    handovers: frozenset[str] = frozenset()  # hand-overs (tool calls) replayed
    answered: frozenset[str] = frozenset()  # … and those whose answers were replayed too
    awaits_reply: bool = False  # it ends with a caller turn nobody answered


@dataclass(frozen=True)
class Line:
    """Words the agent must say as they are: a hold line (out of band: not part of the
    conversation) or the line before an action."""

    text: str
    out_of_band: bool = False
    guidance: str = ""  # what else the engine is told about saying it
    handover_id: str | None = None  # the hand-over it answers (GPT-Live: said as that delegation's answer)


# -- commands out ------------------------------------------------------------------------------
class Engine(Protocol):
    """One speech-model session of a call, as the controller drives it."""

    name: EngineName
    # True (Realtime): every reply is asked for, and never while another is active. False
    # (GPT-Live): the engine speaks by itself; a command only adds context, nothing collides.
    requests_replies: bool

    def events(self) -> AsyncIterator[EngineEvent]:
        """The session's events, until it ends (the socket closed or failed)."""
        ...

    async def start(self) -> None:
        """Configure the session (Realtime: ``session.update``)."""

    async def append_audio(self, b64_audio: str) -> None:
        """Hot path: caller audio, base64 in the session's format, passed through."""

    def append_audio_now(self, b64_audio: str) -> bool:
        """:meth:`append_audio` without a coroutine, when nothing in it has to wait: True when
        done, False when the caller must await :meth:`append_audio` (nothing was done)."""
        ...

    def new_request_id(self) -> str:
        """An id for :meth:`request_reply`, known before the request is sent."""
        ...

    def watch_barge_in(self, now: Callable[[], None]) -> None:
        """Call ``now`` the moment the caller is heard starting to speak, before the event is
        handled, when nothing is ahead of it (Realtime: ``speech_started`` read by the model
        socket while the call's events are all handled); engines that cannot, never call it."""

    def take_audio(self, now: AudioNow) -> None:
        """Offer each chunk of agent audio to ``now`` the moment it is read, when nothing is
        ahead of it (Realtime: a delta read by the model socket while the call's events are
        all handled). When ``now`` answers True it has relayed the chunk and the chunk is no
        :class:`AgentAudio` event; False: the event comes as usual. Engines that cannot, never
        call it."""

    async def request_reply(self, request_id: str, purpose: Purpose, line: Line | None = None) -> None:
        """Ask the engine to speak now: freely (``line`` None) or saying ``line``."""

    async def answer_handover(self, handover_id: str, text: str) -> None:
        """Put the answer of a hand-over into the conversation (spoken on the next reply)."""

    async def stop_speaking(self, item_id: str, heard_ms: int) -> None:
        """The caller barged in: the agent's item ends where the caller stopped hearing it."""

    async def cancel_reply(self, reply_id: str) -> None: ...

    async def restore(self, items: Sequence[HistoryItem]) -> Restored:
        """A new session after a drop: put the recorded conversation back."""
        ...

    async def close(self) -> None: ...

