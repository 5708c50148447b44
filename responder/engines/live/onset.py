"""The caller starting to speak on a GPT-Live call: the barge-in signal, and what it is over.

Live says nothing when the caller starts talking (the model stops by itself): the caller's own
audio is the signal (:class:`~responder.engines.live.audio.CallerVoice`), so that what still
plays for them is cleared at once; the first transcript fragment of a turn when their audio
was not heard (a sideband, a quiet line).

The model's track comes in real time and is relayed as it comes: the caller's buffer runs dry
between two chunks, mid-utterance, and every mark may be back when the caller speaks. So the
signal names the utterance the model is voicing (:attr:`CallerSpeechStarted.over
<responder.core.engine.CallerSpeechStarted.over>`): that one plays, whatever the marks say.
"""

from __future__ import annotations

import time
from typing import Final

from responder.core import engine as ev
from responder.engines.live.audio import CallerVoice, caller_voiced
from responder.engines.live.turns import Utterance

# Output silent for less than this is a pause within the utterance: the model is speaking it.
# (The caller reacting to its end is heard later: their reply is not a barge-in.)
MID_SPEECH_SILENCE_MS: Final = 200.0
# No chunk of the track read for this long (the reader held back by a slow controller, a
# stalled network): what the model is doing is not known, so it is not taken as speaking.
TRACK_STALE_S: Final = 0.3


def speech_started(agent: Utterance | None) -> ev.CallerSpeechStarted:
    """The caller started speaking, over ``agent`` (the open utterance) if the model is voicing it."""
    if agent is None or agent.silent_ms >= MID_SPEECH_SILENCE_MS:
        return ev.CallerSpeechStarted()
    if time.monotonic() - agent.read_at > TRACK_STALE_S:
        return ev.CallerSpeechStarted()
    return ev.CallerSpeechStarted(over=agent.item_id)


class CallerOnset:
    """Speech starts and stops heard on the caller's audio, as engine events."""

    def __init__(self) -> None:
        self.voice = CallerVoice()
        self.pending = False  # a speech start from the caller's audio that no turn took over

    def feed(
        self, b64_audio: str, encoding: str, ms: float, turn_open: bool, agent: Utterance | None
    ) -> ev.EngineEvent | None:
        """One frame of the caller's audio: a start (none while their turn is open), or a
        stop when a start turned out to be a noise, no words."""
        if self.voice.feed(caller_voiced(b64_audio, encoding), ms) and not turn_open:
            self.pending = True
            return speech_started(agent)
        if self.pending and not self.voice.speaking:  # the caller is quiet again
            self.pending = False
            return ev.CallerSpeechStopped()
        return None
