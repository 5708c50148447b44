"""The agent's audio to the caller: relayed untouched, followed now and then by a mark.

A chunk comes either as an :class:`~responder.core.engine.AgentAudio` event through the call's
pump (:func:`relay`), or straight from the engine's read callback when nothing is ahead of it
(:meth:`~responder.core.engine.Engine.take_audio`, :func:`relay_now`): there it costs no task
wake-up, no event object and no coroutine, and reaches the caller in the same loop step it was
read in, when the transport can write it at once
(:meth:`~responder.core.contract.CallerLink.send_audio_now`). Both do the same, in the same
order: a chunk of an interrupted reply is dropped, a hold line's item is marked out of band,
the first chunk after the caller stopped speaking gives the response-latency metric, and the
playback accounts for the chunk only once it is certain to go out.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Protocol

from infra import metrics
from responder.core import engine as ev
from responder.core.contract import CallerLink
from responder.core.engine import HOLD_LINE
from responder.core.playback import PlaybackTracker
from responder.core.recorder import TranscriptRecorder
from responder.core.responses import ResponseTracker


class AudioHost(Protocol):
    """The call controller, as its agent audio needs it."""

    closed: bool
    caller: CallerLink
    playback: PlaybackTracker
    responses: ResponseTracker
    recorder: TranscriptRecorder
    speech_stopped_at: float | None  # → first agent audio (the response-latency metric)


def relay_now(host: AudioHost, item_id: str, reply_id: str | None, audio: str) -> bool:
    """The chunk handled without a coroutine: True when it was dropped or written; False when
    nothing was done (the call ended, or the transport must be awaited: :func:`relay`)."""
    if host.closed:
        return False
    if _dropped(host, item_id, reply_id):
        return True
    return host.caller.send_audio_now(audio, partial(_going_out, host, item_id, audio))


def _going_out(host: AudioHost, item_id: str, audio: str) -> str | None:
    """The chunk is certain to go out: noted and accounted before it is written, so that nothing
    after the write can fail (an exception would send it down the pump's path a second time)."""
    _noted(host, item_id)
    return host.playback.sent(item_id, audio)


async def relay(host: AudioHost, event: ev.AgentAudio) -> None:
    item_id = event.item_id
    if _dropped(host, item_id, event.reply_id):
        return
    _noted(host, item_id)
    await host.caller.send_audio(event.audio, host.playback.sent(item_id, event.audio))


def _dropped(host: AudioHost, item_id: str, reply_id: str | None) -> bool:
    """A chunk of a reply the caller spoke over (its audio still in flight): not played."""
    return reply_id in host.responses.interrupted or item_id in host.recorder.interrupted


def _noted(host: AudioHost, item_id: str) -> None:
    active = host.responses.active
    if active is not None and active.purpose == HOLD_LINE:
        host.recorder.out_of_band.add(item_id)
    if host.speech_stopped_at is not None:
        metrics.RESPONSE_LATENCY.observe(time.monotonic() - host.speech_stopped_at)
        host.speech_stopped_at = None
