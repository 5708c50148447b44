"""A barge-in on GPT-Live when the caller's buffer ran dry mid-utterance.

The model's track comes in real time and is relayed as it comes, so between two of its chunks
the caller may have played everything sent (every mark echoed) while the model is still
speaking. The caller speaking then is a barge-in all the same: the buffer is cleared and the
utterance recorded as interrupted where it was heard. A caller who answers once the model has
gone quiet is not one.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import structlog

from callrecord.decisions import Decision
from callrecord.history import CallHistory, HistoryItem
from responder.core.contract import finish_kept_tasks
from responder.core.controller import CallController, ControllerConfig
from responder.engines.live.engine import LiveEngine
from responder.engines.live.onset import MID_SPEECH_SILENCE_MS, TRACK_STALE_S, speech_started
from responder.engines.live.turns import Utterance
from tests.support.caller import RecordingCaller
from tests.support.sockets import ScriptedSocket
from tests.support.waits import wait_until

LOG = structlog.get_logger("test")
SESSION = {"model": "gpt-live-1.1", "audio": {"format": {"type": "audio/pcmu", "rate": 8000}}}
VOICED = base64.b64encode(bytes([0x20, 0xA0] * 400)).decode()  # 100 ms of the model speaking
SILENT = base64.b64encode(b"\xff" * 800).decode()  # 100 ms of its track's silence
LOUD_FRAME = base64.b64encode(bytes([0x10, 0x90] * 80)).decode()  # 20 ms of the caller speaking
STARTED = {"type": "session.started", "session": {"id": "live_1"}}


def output(*chunks: str) -> list[dict[str, Any]]:
    return [{"type": "session.output_audio.delta", "delta": chunk} for chunk in chunks]


def words(delta: str, start_ms: int, end_ms: int) -> dict[str, Any]:
    return {"type": "session.output_transcript.delta", "delta": delta, "start_ms": start_ms, "end_ms": end_ms}


@dataclass
class Call:
    controller: CallController
    socket: ScriptedSocket
    phone: RecordingCaller

    async def played_all(self, chunks: int) -> None:
        """``chunks`` were relayed and the phone played them all: every mark comes back."""
        await wait_until(lambda: len(self.phone.audio) == chunks, what="the agent's audio")
        for _, mark in self.phone.audio:
            if mark is not None:
                self.controller.caller_mark(mark)
        assert not self.controller.playback.is_playing()  # the buffer ran dry

    async def caller_speaks(self) -> None:
        for _ in range(5):  # 100 ms: past the onset
            await self.controller.caller_audio(LOUD_FRAME)
        await asyncio.sleep(0.05)

    async def agent_said(self, history: CallHistory, text: str) -> HistoryItem:
        """The agent's utterance, once its whole transcript (``text``) is recorded."""

        async def said() -> HistoryItem | None:
            await self.controller.recorder.flush(2.0)
            [item] = [i for i in await history.get_items(self.controller.call_id) if i.role == "assistant"]
            return item if text in (item.text, item.full_text) else None

        found: HistoryItem = await wait_until(said, what="the utterance's end")
        return found


async def never_asked(call_id: str, context: str, **_: object) -> Decision:
    raise AssertionError("no hand-over in these calls")


@pytest.fixture
async def call(history: CallHistory) -> AsyncIterator[Call]:
    socket, phone = ScriptedSocket(stay_open=True), RecordingCaller()
    engine = LiveEngine(socket, SESSION, LOG, bytes_per_ms=8.0)
    await history.start_call("CAlive_dry", transport="test", engine="live")
    config = ControllerConfig(transcript_wait_s=0.5, hold_delay_s=30.0, greeting=False)
    controller = CallController("CAlive_dry", engine, phone, history, never_asked, config)
    pump = asyncio.ensure_future(controller.pump())
    await controller.start()
    socket.push(STARTED)
    await wait_until(lambda: controller._session_ready, what="the session")
    yield Call(controller, socket, phone)
    socket.end()
    await asyncio.wait_for(pump, 5)
    await controller.close()
    await finish_kept_tasks(2.0)


async def test_the_caller_speaking_while_the_model_speaks_clears_though_every_mark_is_back(
    call: Call, history: CallHistory
) -> None:
    call.socket.push(
        words("Sleeping bags can ", 0, 300),
        *output(VOICED, VOICED, VOICED),
    )
    await call.played_all(3)
    await call.caller_speaks()
    assert call.phone.clears == 1
    call.socket.push(
        words("be returned", 300, 500),
        *output(VOICED, VOICED, *[SILENT] * 6),  # the model stops by itself, a little later
    )
    item = await call.agent_said(history, "Sleeping bags can be returned")
    assert len(call.phone.audio) == 3  # nothing more of it went to the caller
    assert item.status == "interrupted" and item.audio_end_ms == 300  # all that was sent: heard
    assert item.text == "Sleeping bags can" and item.full_text == "Sleeping bags can be returned"


async def test_a_caller_answering_once_the_model_went_quiet_is_no_barge_in(
    call: Call, history: CallHistory
) -> None:
    quiet = int(MID_SPEECH_SILENCE_MS // 100)  # the utterance is still open (600 ms end it)
    call.socket.push(
        words("Anything else?", 0, 300),
        *output(VOICED, VOICED, VOICED, *[SILENT] * quiet),
    )
    await call.played_all(3)
    await asyncio.sleep(0.05)  # the silence read
    await call.caller_speaks()
    assert call.phone.clears == 0
    call.socket.push(*output(*[SILENT] * 6))
    item = await call.agent_said(history, "Anything else?")
    assert item.status == "completed" and item.text == "Anything else?"


def test_a_track_not_read_for_a_while_does_not_count_as_the_model_speaking() -> None:
    """The engine stops reading while the controller is behind (or the network stalls): an
    utterance whose last chunk was read long ago may be over; the caller is not talking over it."""
    voicing = Utterance("out_1", silent_ms=40.0)
    assert speech_started(voicing).over == "out_1"
    assert speech_started(Utterance("out_1", silent_ms=MID_SPEECH_SILENCE_MS)).over is None
    stale = Utterance("out_1", silent_ms=40.0, read_at=time.monotonic() - 2 * TRACK_STALE_S)
    assert speech_started(stale).over is None
    assert speech_started(None).over is None
