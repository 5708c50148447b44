"""The GPT-Live engine's hand-overs under pressure, over an in-memory socket: a flood of
delegations starts a bounded number of supervisor runs (the same turn joins the running one,
another turn waits for a place, only the newest waits), an answer the caller has moved on from
is dropped, a hold becomes a silent progress note for its delegation, and a session.start the
server never confirms fails the session instead of hanging the call."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
import structlog

from responder.core import engine as ev
from responder.core.engine import Line
from responder.engines.live.engine import LiveEngine, SessionRefused
from tests.support.sockets import ScriptedSocket
from tests.support.waits import wait_until

LOG = structlog.get_logger("test")
SESSION = {"model": "gpt-live-1.1", "audio": {"format": {"type": "audio/pcmu", "rate": 8000}}}
FRAME = base64.b64encode(b"\xff" * 160).decode()  # 20 ms of μ-law silence
COMMENTARY = "session.commentary.append"


class Session:
    """An engine on a started session, its events collected as they come."""

    def __init__(self, **kwargs: Any) -> None:
        self.socket = ScriptedSocket(stay_open=True)
        self.engine = LiveEngine(self.socket, SESSION, LOG, bytes_per_ms=8.0, **kwargs)
        self.events: list[ev.EngineEvent] = []
        self._pump = asyncio.ensure_future(self._collect())

    async def _collect(self) -> None:
        async for event in self.engine.events():
            self.events.append(event)

    def handovers(self) -> list[ev.HandoverRequested]:
        return [e for e in self.events if isinstance(e, ev.HandoverRequested)]

    async def caller_turn(self, text: str) -> None:
        """A caller turn on the timeline, ended by the silence after it."""
        start = self.engine.timeline_ms
        for _ in range(10):
            await self.engine.append_audio(FRAME)
        self.socket.push({"type": "session.input_transcript.delta", "delta": text, "start_ms": start,
                          "end_ms": self.engine.timeline_ms})  # fmt: skip
        await asyncio.sleep(0.01)

    async def delegate(self, delegation_id: str) -> None:
        delegation = {"id": delegation_id, "target": "client", "type": "delegation"}
        self.socket.push({"type": "session.delegation.created", "offset_ms": self.engine.timeline_ms,
                          "delegation": delegation})  # fmt: skip
        await asyncio.sleep(0.01)

    async def close(self) -> None:
        self.socket.end()
        await asyncio.wait_for(self._pump, 5)


async def started(**kwargs: Any) -> Session:
    session = Session(**kwargs)
    await session.engine.start()
    session.socket.push({"type": "session.started", "session": {"id": "live_1"}})
    await wait_until(lambda: session.events, what="session.started")
    return session


async def test_the_same_turn_delegated_again_joins_the_running_hand_over() -> None:
    s = await started()
    await s.caller_turn("Can I return a used tent?")
    await s.delegate("dlg_1")
    await s.delegate("dlg_2")  # the model delegates the same turn twice
    [handover] = s.handovers()  # one supervisor run
    await s.engine.answer_handover(handover.handover_id, "Yes, within 60 days.")
    answers = [(e["delegation_id"], e["content"]) for e in s.socket.sent_of(COMMENTARY)]
    assert answers == [("dlg_1", "Yes, within 60 days."), ("dlg_2", "Yes, within 60 days.")]
    await s.close()


async def test_past_the_limit_only_the_newest_turn_waits_and_the_stale_answer_is_dropped() -> None:
    s = await started(max_running=1)
    await s.caller_turn("Can I return a used tent?")
    await s.delegate("dlg_1")
    await s.caller_turn("And what about a headlamp?")
    await s.delegate("dlg_2")
    await s.caller_turn("Actually, what are your store hours?")
    await s.delegate("dlg_3")  # the caller moved on again: dlg_2 is superseded, never runs
    assert [h.handover_id for h in s.handovers()] == ["dlg_1"]
    await s.engine.answer_handover("dlg_1", "Tents: yes, within 60 days.")
    await asyncio.sleep(0.01)
    assert [h.handover_id for h in s.handovers()] == ["dlg_1", "dlg_3"]  # its place went to the newest
    assert s.socket.sent_of(COMMENTARY) == []  # the caller has moved on: dropped, not spoken
    await s.engine.answer_handover("dlg_3", "We open at 9.")
    await asyncio.sleep(0.01)
    assert [(e["delegation_id"], e["content"]) for e in s.socket.sent_of(COMMENTARY)] == [
        ("dlg_3", "We open at 9.")
    ]
    outputs = [e.item.tool_call_id for e in s.events if isinstance(e, ev.ItemAdded)
               and e.item.kind == "function_call_output"]  # fmt: skip
    assert outputs == ["dlg_3"]
    await s.close()


async def test_a_hold_is_a_silent_note_for_the_delegation_still_with_the_supervisor() -> None:
    s = await started()
    await s.caller_turn("Can I return a used tent?")
    await s.delegate("dlg_1")
    hold = Line("Still checking on that for you.", out_of_band=True)
    await s.engine.request_reply("evt_hold", ev.HOLD_LINE, hold)
    [note] = s.socket.sent_of("session.thinking.append")
    assert note["delegation_id"] == "dlg_1" and "Still checking on that for you." in note["content"]
    assert s.socket.sent_of(COMMENTARY) == []  # a commentary would be taken for the answer
    await s.close()


async def test_a_line_that_answers_a_delegation_tags_the_speech_after_it_is_placed() -> None:
    s = await started()
    await s.caller_turn("That's all, thanks, bye.")
    await s.delegate("dlg_1")
    await s.engine.request_reply("evt_line", ev.ACTION_LINE, Line("Goodbye!", handover_id="dlg_1"))
    [answer] = s.socket.sent_of(COMMENTARY)
    assert answer == {"type": COMMENTARY, "content": "Goodbye!", "delegation_id": "dlg_1",
                      "event_id": "evt_line"}  # fmt: skip
    s.socket.push(
        {"type": "session.commentary.appended", "start_ms": 0, "end_ms": 10, "client_event_id": "evt_line"},
        {"type": "session.output_transcript.delta", "delta": "Goodbye!", "start_ms": 0, "end_ms": 10},
    )

    def replies() -> list[ev.ReplyStarted]:
        return [e for e in s.events if isinstance(e, ev.ReplyStarted)]

    [reply] = await wait_until(replies, what="the line's speech")
    assert reply.purpose == ev.ACTION_LINE
    await s.close()


async def test_a_session_start_never_confirmed_fails_the_session() -> None:
    s = Session(start_timeout_s=0.2)
    await s.engine.start()
    await s.engine.append_audio(FRAME)  # held: the session has not started
    with pytest.raises(SessionRefused, match=r"no session\.started"):
        await asyncio.wait_for(s._pump, 5)
    assert [e["type"] for e in s.socket.sent] == ["session.start"]
