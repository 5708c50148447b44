"""Scenario files: what the simulated caller says and how the simulated models behave.

A scenario is YAML. It drives three test doubles at once, deterministically:

* the simulated **caller** (``responder call``) streams paced μ-law "speech" for each turn;
* the simulated **realtime model** (simulator WS) detects the speech by audio energy, emits
  the turn's transcript, and either answers directly (chitchat: ``reply`` is set) or says a
  filler and calls the turn's ``tool`` (``getNextResponseFromSupervisor`` by default);
* on a WebRTC/SIP sideband, the simulator's **virtual caller** plays the same turns;
* the simulated **GPT-Live model** (:mod:`simulator.live`) detects the turns the same way,
  answers chitchat itself and delegates the other turns to the client (``live_delegates``);
* the simulated **text model** (``/v1/responses``, ``/v1/chat/completions``) plays the
  supervisor: looks up policies with the tools, then answers; ``supervisor_delay_s`` makes it
  slow for hold-line and deadline tests.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
# How a turn is timed, the same for the phone caller (simulator.caller) and the sideband's
# virtual caller (simulator.virtual_caller).
MS_PER_CHAR = 60  # caller speech length per character of the turn's text
MIN_SPEECH_MS = 600
DTMF_GAP_MS = 100  # audio time between two key presses


class Turn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    say: str = Field(description="What the caller says: the transcript the simulator reports.")
    reply: str | None = Field(
        default=None, description="Chitchat: the responder answers this directly, no supervisor."
    )
    filler: str = "One moment."
    speech_ms: int | None = Field(
        default=None, description="How long the caller speaks; derived from the text when unset."
    )
    barge_in_after_ms: int | None = Field(
        default=None,
        description="Barge-in: instead of waiting for quiet, the caller starts speaking once it "
        "has heard this many ms of assistant audio (audio time) since its previous turn ended.",
    )
    dtmf: str | None = Field(default=None, description="Digits the caller presses before speaking.")
    transcript_delay_ms: int = Field(
        default=150, description="Delay of the user transcript after the item is committed."
    )
    supervisor_delay_s: float = Field(
        default=0.0, description="Extra latency of the simulated supervisor model for this turn."
    )
    tool: str = Field(
        default="getNextResponseFromSupervisor",
        description="The tool the simulated responder calls for this (non-chitchat) turn, e.g. "
        'escalate_to_human or end_call (arguments {"reason": …}); falls back to the supervisor '
        "tool when the session does not declare it.",
    )
    live_delegates: bool = Field(
        default=True,
        description="GPT-Live (simulator.live): the model delegates this factual turn "
        "(session.delegation.created). False: it does not (a known Live failure, for the "
        "service's delegation recovery); it goes quiet, or says the filler with "
        "live_filler_without_delegation, and speaks a later null-id commentary as the answer.",
    )
    live_filler_without_delegation: bool = Field(
        default=False,
        description="GPT-Live, with live_delegates false: the model still says the turn's filler "
        "(it only acknowledged, without delegating).",
    )
    tool_arguments: str | None = Field(
        default=None,
        description="Raw arguments JSON the simulated responder sends with its tool call "
        "(to test invalid arguments); derived from the transcript when unset.",
    )


def speech_ms_for(turn: Turn) -> int:
    """How long (audio ms) the caller speaks ``turn``: its ``speech_ms``, else from its text."""
    return turn.speech_ms or max(MIN_SPEECH_MS, MS_PER_CHAR * len(turn.say))


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    caller_number: str = "+15555550123"
    greeting: str = "Thanks for calling Northwind Outfitters, this is Robin. How can I help you today?"
    turns: list[Turn]
    quiet_ms: int = Field(
        default=1500,
        description="Wall-clock ms of silence from the service (nothing playing, nothing arriving) "
        "after which the caller takes its next turn, or hangs up after the last one. Not scaled "
        "by the speed factor: the service's hold delay and deadline are wall-clock too.",
    )

    def turn_for_text(self, text: str) -> Turn | None:
        """The turn whose ``say`` matches ``text`` (used by the text model double)."""
        wanted = _norm(text)
        for turn in self.turns:
            if _norm(turn.say) == wanted:
                return turn
        for turn in self.turns:
            if _norm(turn.say) in wanted or wanted in _norm(turn.say):
                return turn
        return None


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a scenario by file path, or by the name of a built-in scenario."""
    path = Path(name_or_path)
    if not path.exists():
        path = SCENARIO_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml")))
        raise FileNotFoundError(f"no scenario {name_or_path!r} (built-in: {known})")
    return Scenario.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
