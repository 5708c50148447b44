"""A barge-in's ``clear``: sent the moment the engine sees the caller start speaking, if it can.

The caller must stop hearing the agent at once, so the ``clear`` is the first thing a barge-in
does. Handled as an event, it waits for the call's turn on the event loop (its pump task is
woken behind every other call's ready work: at 40 calls, most of the speech_started → clear
time). An engine that can tell the event is coming, before it is handled, with nothing ahead
of it (:meth:`~responder.core.engine.Engine.watch_barge_in`) lets :func:`clear_now` send the
``clear`` from the socket's read callback instead, when the transport can write it there and
then (:meth:`~responder.core.contract.CallerLink.clear_now`). The heard position is taken at
that moment and the playback frozen there; the event's handler then does the rest with it
(:func:`clear`), as if it had sent the ``clear`` itself.

Playing is what the marks say (audio sent, not all of it acknowledged), or the item the engine
says it is speaking (:attr:`~responder.core.engine.CallerSpeechStarted.over`): audio that comes
in real time (GPT-Live's track) is played as fast as it comes, so the caller's buffer runs dry
between two chunks, mid-utterance, with every mark back; the caller speaking then still cuts
the utterance (its next chunks are dropped) where they heard it — all that was sent.
"""

from __future__ import annotations

from typing import Literal

from responder.core.contract import CallerLink
from responder.core.playback import PlaybackTracker

Cleared = tuple[str, int]  # (the item the caller was hearing, the ms of it heard)
# where the clear went out (logged with call.barge_in): the socket's read callback, or the handler
SentBy = Literal["read", "handler"]


def clear_now(playback: PlaybackTracker, caller: CallerLink) -> Cleared | None:
    """Clear the caller's audio now if something is playing and the transport can write now."""
    if (playing := _playing(playback)) is None or not caller.clear_now():
        return None
    playback.clear()  # mark echoes from now on do not move the heard position
    return playing


async def clear(
    playback: PlaybackTracker, caller: CallerLink, cleared: Cleared | None, over: str | None = None
) -> Cleared | None:
    """The barge-in's clear: ``cleared`` when :func:`clear_now` sent it, else sent here.
    None: nothing was playing (``over``: the item the engine says it is speaking)."""
    if cleared is not None:
        return cleared
    if (playing := _playing(playback, over)) is not None:
        await caller.clear_audio()
    return playing


def _playing(playback: PlaybackTracker, over: str | None = None) -> Cleared | None:
    """The item the caller is hearing and how much of it, taken now; None when nothing plays."""
    item_id = playback.current_item
    if item_id is None or not (playback.is_playing() or item_id == over):
        return None
    return item_id, playback.heard_ms(item_id)
