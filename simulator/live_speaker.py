"""The output track of a GPT-Live session: one continuous audio stream on the session timeline.

As on the real primary WebSocket (docs/protocol-live.md §4), ``session.output_audio.delta``
carries 100 ms of audio in the session format, with no timestamps, for the whole session:
speech while the model talks, digital silence between utterances (``silence=False`` sends
nothing between utterances instead, for tests that want fewer events).

The track runs on the session timeline, like everything the model does: the delta for
``[T, T + 100 ms)`` goes out once the input audio reaches ``T`` (:meth:`Speaker.advance`), so
a client streaming in real time ÷ speed gets the output paced the same way, and the output's
position always matches the input's (under load too). While an utterance plays, its words go
out as ``session.output_transcript.delta`` with ``start_ms``/``end_ms`` on the timeline (where
its audio is), each :data:`TRANSCRIPT_LEAD_MS` ahead of its audio. Consecutive utterances are
:data:`GAP_MS` of silence apart.

No event tells the client that the model started, stopped or was interrupted. A barge-in
(:meth:`Speaker.barge_in`, at the caller's speech onset ``S``) ends the current utterance at
the first chunk boundary at or after ``S +`` :data:`BARGE_IN_STOP_MS` (never before audio
already sent); the track then goes back to silence. While the caller has the floor
(:meth:`Speaker.hold`), no new utterance starts; queued ones wait for the turn's end.
"""

from __future__ import annotations

import base64
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from simulator.live_audio import LiveFormat
from simulator.live_record import LiveUtterance
from simulator.realtime_response import speech_ms, word_schedule

CHUNK_MS = 100  # audio per session.output_audio.delta
BARGE_IN_STOP_MS = 150  # the model's speech ends this long after the caller's speech onset
# A word's transcript delta goes out with the chunk this long before its audio: the text runs a
# little ahead of the speech, so at a barge-in the model has transcribed more than was heard.
TRANSCRIPT_LEAD_MS = 300
GAP_MS = 200  # silence between two utterances that follow each other

Emit = Callable[[dict[str, Any]], Awaitable[None]]
Finished = Callable[[LiveUtterance], Awaitable[None]]


def utterance_ms(text: str) -> int:
    """Length of the simulated voice saying ``text``, in whole chunks."""
    return -(-speech_ms(text) // CHUNK_MS) * CHUNK_MS


class Speaker:
    """Plays utterances one after another on the session's output track."""

    def __init__(
        self,
        *,
        fmt: LiveFormat,
        emit: Emit,
        on_finished: Finished,
        silence: bool = True,
        timestamps: bool = False,
    ) -> None:
        """``timestamps``: deltas carry ``start_ms``/``end_ms`` (a sideband's reflected output)."""
        self.fmt = fmt
        self.silence = silence
        self.timestamps = timestamps
        self.voiced_ms = 0  # speech sent so far
        self.queue: deque[LiveUtterance] = deque()
        self.current: LiveUtterance | None = None
        self.output_ms = 0  # the track's position: where the next chunk starts on the timeline
        self._emit = emit
        self._on_finished = on_finished
        self._held = False
        self._words: list[tuple[float, str]] = []  # (start, word) not yet transcribed
        self._unsaid: list[tuple[float, str]] = []  # … not yet voiced
        self._gap_until = 0  # no utterance starts before this position
        self._stop_at: int | None = None  # timeline position at which the current utterance ends
        self._silent_chunk = base64.b64encode(fmt.silence(CHUNK_MS)).decode("ascii")

    @property
    def speaking(self) -> bool:
        return self.current is not None

    @property
    def busy(self) -> bool:
        """Something is playing or waiting to play."""
        return self.current is not None or bool(self.queue)

    def say(self, utterance: LiveUtterance) -> None:
        utterance.audio_ms = utterance.audio_ms or utterance_ms(utterance.text)
        self.queue.append(utterance)

    def play_now(self, utterance: LiveUtterance) -> None:
        """Play ``utterance`` next, ending the current one with the chunk sent (a fixture)."""
        if self.current is not None:
            self._stop_at = self.output_ms
        self.queue.appendleft(utterance)

    def barge_in(self, onset_ms: int) -> None:
        """Caller speech started at ``onset_ms``: the current utterance ends soon after."""
        if self.current is not None and self._stop_at is None:
            self._stop_at = max(self.output_ms, onset_ms + BARGE_IN_STOP_MS)

    def hold(self, held: bool) -> None:
        self._held = held

    async def advance(self, timeline_ms: float) -> None:
        """Send the track up to the timeline: every chunk starting at or before ``timeline_ms``."""
        while self.output_ms <= timeline_ms:
            await self._chunk()

    async def _chunk(self) -> None:
        position = self.output_ms
        if self.current is not None and self._stop_at is not None and position >= self._stop_at:
            await self._finish(self.current)  # cut off: barge-in or fixture
        if self.current is None and self.queue and not self._held and position >= self._gap_until:
            self._begin(self.queue.popleft())
        utterance = self.current
        self.output_ms += CHUNK_MS
        where = {"start_ms": position, "end_ms": position + CHUNK_MS} if self.timestamps else {}
        if utterance is None:
            if self.silence:
                await self._emit({"type": "session.output_audio.delta", "delta": self._silent_chunk, **where})
            return
        offset = utterance.said_ms
        data = base64.b64encode(self.fmt.speech(CHUNK_MS, offset_ms=offset)).decode("ascii")
        self.voiced_ms += CHUNK_MS
        await self._emit({"type": "session.output_audio.delta", "delta": data, **where})
        while self._unsaid and self._unsaid[0][0] < offset + CHUNK_MS:
            utterance.said += self._unsaid.pop(0)[1]
        while self._words and self._words[0][0] < offset + CHUNK_MS + TRANSCRIPT_LEAD_MS:
            start, word = self._words.pop(0)
            end = self._words[0][0] if self._words else utterance.audio_ms
            utterance.transcribed += word
            delta = {
                "delta": word,
                "start_ms": position - offset + int(start),
                "end_ms": position - offset + int(end),
            }
            await self._emit({"type": "session.output_transcript.delta", **delta})
        utterance.said_ms += CHUNK_MS
        if utterance.said_ms >= utterance.audio_ms:
            await self._finish(utterance)

    def _begin(self, utterance: LiveUtterance) -> None:
        utterance.start_ms = self.output_ms
        self._words = word_schedule(utterance.text, utterance.audio_ms) if utterance.text else []
        self._unsaid = list(self._words)
        self._stop_at = None
        self.current = utterance

    async def _finish(self, utterance: LiveUtterance) -> None:
        utterance.cut = utterance.said_ms < utterance.audio_ms
        utterance.done = True
        utterance.end_ms = (utterance.start_ms or 0) + utterance.said_ms
        self.current = None
        self._words, self._unsaid = [], []
        self._stop_at = None
        self._gap_until = self.output_ms + GAP_MS
        await self._on_finished(utterance)
