"""The GPT-Live double plays calls: caller turns from the input audio, chitchat, delegations and
their acknowledgements, commentary spoken, barge-in, the timeline, one continuous audio track.

Driven through the real ``openai`` SDK with input streamed in real time ÷ SPEED.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp.test_utils import TestServer

from simulator.live_speaker import CHUNK_MS, TRANSCRIPT_LEAD_MS
from simulator.scenario import Scenario, Turn
from tests.support.live import PCM24, LiveClient, LiveSim, OpenLive, live_session, live_sims
from tests.support.waits import wait_until

SPEED = 10.0
HELLO = Turn(say="Hi, how are you?", reply="Great, thanks for asking!", speech_ms=500)
TENT = Turn(say="Can I return a tent I used?", filler="Let me check.", speech_ms=700)
THANKS = Turn(say="Okay, thanks.", reply="You're welcome.", speech_ms=400)
ANSWER = "Yes, within sixty days."


@pytest.fixture
async def open_live(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> AsyncIterator[OpenLive]:
    async with live_sims(aiohttp_server) as open_sim:
        yield open_sim


async def call(open_live: OpenLive, *turns: Turn, **session: object) -> tuple[LiveSim, LiveClient]:
    sim = await open_live(Scenario(name="live-call", turns=list(turns)), speed=SPEED)
    client = await sim.connect()
    await client.start(live_session(**session))  # type: ignore[arg-type]
    return sim, client


def text_of(client: LiveClient, event_type: str) -> str:
    return "".join(e["delta"] for e in client.of_type(event_type))


async def wait_spoken(sim: LiveSim, count: int, within_s: float = 3.0) -> None:
    """Until the model has finished ``count`` utterances."""
    await wait_until(lambda: sum(u.done for u in sim.session.utterances) >= count, within_s, what="speech")


async def test_chitchat_turn_is_transcribed_and_answered(open_live: OpenLive) -> None:
    sim, client = await call(open_live, HELLO)
    await client.stream_for(200)
    speech_start = client.sent_ms
    await client.speak(HELLO.speech_ms or 0)
    first = await client.until("session.output_transcript.delta")
    await wait_spoken(sim, 1)
    deltas = client.of_type("session.input_transcript.delta")
    assert len(deltas) >= 2 and "".join(d["delta"] for d in deltas) == HELLO.say
    turn = sim.session.caller_turns[0]
    assert abs(turn.start_ms - speech_start) <= 20 and abs(turn.end_ms - (speech_start + 500)) <= 20
    assert deltas[0]["start_ms"] == turn.start_ms and deltas[-1]["end_ms"] == turn.end_ms
    assert all(a["end_ms"] <= b["start_ms"] for a, b in itertools.pairwise(deltas))
    assert first["start_ms"] >= turn.detected_ms
    assert text_of(client, "session.output_transcript.delta") == HELLO.reply
    assert sim.session.spoken("reply") == [HELLO.reply] and not sim.session.delegations
    assert not client.of_type("session.delegation.created")
    assert not sim.state.live_errors_sent and not sim.state.live_invalid_events


async def test_delegated_turn_acknowledged_then_answered_by_commentary(open_live: OpenLive) -> None:
    sim, client = await call(open_live, TENT, THANKS)
    await client.speak(TENT.speech_ms or 0)
    created = await client.until("session.delegation.created")
    delegation = created["delegation"]
    assert delegation["target"] == "client" and delegation["id"].startswith("dlg_")
    turn = sim.session.caller_turns[0]
    assert created["offset_ms"] == turn.detected_ms == turn.end_ms + 500
    assert created["offset_ms"] >= client.of_type("session.input_transcript.delta")[-1]["end_ms"]
    # acknowledgement_delay_ms 0: the turn's filler is spoken at once
    await client.conn.session.commentary.append(content=ANSWER, delegation_id=delegation["id"], event_id="a1")
    appended = await client.until("session.commentary.appended")
    assert appended["client_event_id"] == "a1" and appended["start_ms"] >= created["offset_ms"]
    await wait_spoken(sim, 2)
    assert sim.session.spoken() == [TENT.filler, ANSWER]
    answer = sim.session.utterances[1]
    assert answer.kind == "commentary" and answer.delegation_id == delegation["id"]
    assert answer.start_ms is not None and answer.start_ms >= appended["end_ms"]
    record = sim.session.delegations[delegation["id"]]
    assert record.acknowledgement == "requested" and record.spoken and not record.answered
    # a milestone for it is still accepted (the caller has not spoken since) …
    await client.conn.session.commentary.append(content="That's all.", delegation_id=delegation["id"])
    await client.until("session.commentary.appended")
    # … and once the caller has taken another turn the delegation is answered
    await client.speak(THANKS.speech_ms or 0)
    await client.until("session.input_transcript.delta")
    assert record.answered
    await client.send(
        {
            "type": "session.commentary.append",
            "content": "Late.",
            "delegation_id": delegation["id"],
            "event_id": "late",
        }
    )
    error = (await client.until("error"))["error"]
    assert (error["code"], error["param"], error["client_event_id"]) == (
        "invalid_value",
        "delegation_id",
        "late",
    )
    assert [e["type"] for e in sim.state.live_refused_events] == ["session.commentary.append"]


async def test_thinking_within_the_delay_cancels_the_acknowledgement(open_live: OpenLive) -> None:
    sim, client = await call(open_live, TENT, delegation={"type": "client", "acknowledgement_delay_ms": 3000})
    await client.speak(TENT.speech_ms or 0)
    created = await client.until("session.delegation.created")
    dlg = created["delegation"]["id"]
    await client.conn.session.thinking.append(content="Checking the returns policy.", delegation_id=dlg)
    await client.until("session.thinking.appended")
    await client.stream_for(3100)  # past the acknowledgement delay: nothing was said
    assert sim.session.utterances == [] and sim.session.delegations[dlg].acknowledgement == "cancelled"
    assert sim.session.delegations[dlg].thinking == ["Checking the returns policy."]
    await client.conn.session.commentary.append(content=ANSWER, delegation_id=dlg)
    await wait_spoken(sim, 1)
    assert sim.session.spoken() == [ANSWER]


async def test_acknowledgement_spoken_after_the_delay_when_nothing_came(open_live: OpenLive) -> None:
    sim, client = await call(open_live, TENT, delegation={"type": "client", "acknowledgement_delay_ms": 600})
    await client.speak(TENT.speech_ms or 0)
    created = await client.until("session.delegation.created")
    await wait_spoken(sim, 1)
    filler = sim.session.utterances[0]
    assert (filler.kind, filler.said.strip()) == ("acknowledgement", TENT.filler)
    assert filler.start_ms is not None and filler.start_ms >= created["offset_ms"] + 600
    assert sim.session.delegations[created["delegation"]["id"]].acknowledgement == "requested"


@pytest.mark.parametrize("filler", [False, True])
async def test_turn_not_delegated_is_answered_by_null_commentary(open_live: OpenLive, filler: bool) -> None:
    quiet = TENT.model_copy(update={"live_delegates": False, "live_filler_without_delegation": filler})
    sim, client = await call(open_live, quiet)
    await client.speak(quiet.speech_ms or 0)
    await client.until("session.input_transcript.delta")
    await client.stream_for(1500)
    assert not client.of_type("session.delegation.created") and not sim.session.delegations
    assert sim.session.spoken() == ([quiet.filler] if filler else [])
    assert sim.session.caller_turns[0].delegation_id is None
    await client.conn.session.commentary.append(content=ANSWER, delegation_id=None)
    await wait_spoken(sim, 2 if filler else 1)
    assert sim.session.spoken("commentary") == [ANSWER]


async def test_greeting_and_quoted_instructions(open_live: OpenLive) -> None:
    sim, client = await call(open_live, HELLO)
    await client.conn.session.commentary.append(content="Greet the caller warmly.", delegation_id=None)
    await client.conn.session.commentary.append(content='Say exactly: "Please hold."', delegation_id=None)
    hold = 'Tell the caller, in a few words, that you are still checking: "Still checking."'
    await client.conn.session.commentary.append(content=hold, delegation_id=None)
    await wait_spoken(sim, 3, within_s=4)
    assert sim.session.spoken() == [sim.state.scenario.greeting, "Please hold.", "Still checking."]
    assert [u.kind for u in sim.session.utterances] == ["greeting", "commentary", "commentary"]


async def test_barge_in_cuts_the_utterance(open_live: OpenLive) -> None:
    long_reply = (
        "Sure, let me tell you all about our tents, our sleeping bags, our stores in town "
        "and our opening hours today and over the holidays."
    )
    sim, client = await call(open_live, HELLO.model_copy(update={"reply": long_reply}), THANKS)
    await client.speak(HELLO.speech_ms or 0)
    for _ in range(4):
        await client.until("session.output_transcript.delta")
    await client.speak(THANKS.speech_ms or 0)
    await wait_spoken(sim, 2)
    reply, welcome = sim.session.utterances
    turn = sim.session.caller_turns[1]
    assert reply.cut and reply.said_ms < reply.audio_ms and long_reply.startswith(reply.said)
    assert turn.barged_in and reply.end_ms is not None
    assert 150 <= reply.end_ms - turn.start_ms <= 250  # stopped ~150-250 ms after the caller's onset
    # the transcript runs a little ahead of the audio: at least what was voiced was transcribed
    assert reply.transcribed.startswith(reply.said)
    assert long_reply.startswith(reply.transcribed)
    assert (welcome.said.strip(), welcome.cut) == (THANKS.reply, False)
    assert text_of(client, "session.output_transcript.delta") == reply.transcribed + THANKS.reply
    words = client.of_type("session.output_transcript.delta")
    assert all(d["start_ms"] < reply.end_ms + TRANSCRIPT_LEAD_MS for d in words[: len(words) - 2])


async def test_timeline_follows_the_input_audio(open_live: OpenLive) -> None:
    sim, client = await call(open_live, TENT)
    await client.stream_for(1000)
    start = client.sent_ms
    await client.speak(TENT.speech_ms or 0)
    created = await client.until("session.delegation.created")
    # 700 ms of speech then 500 ms of silence, on the timeline of the audio sent (20 ms frames)
    assert abs(created["offset_ms"] - (start + 1200)) <= 30
    await client.stop_streaming()
    assert sim.session.timeline_ms == client.sent_ms


async def test_one_continuous_audio_track(open_live: OpenLive) -> None:
    sim, client = await call(open_live, HELLO)
    await client.stream_for(300)
    await client.speak(HELLO.speech_ms or 0)
    await wait_spoken(sim, 1)
    await client.stream_for(500)
    await client.stop_streaming()
    # on the timeline: the chunk for [T, T + 100 ms) goes out once the input reaches T
    expected = client.sent_ms // CHUNK_MS + 1
    await wait_until(lambda: len(client.of_type("session.output_audio.delta")) == expected, 1)
    chunks = [base64.b64decode(e["delta"]) for e in client.of_type("session.output_audio.delta")]
    assert chunks and all(len(c) == CHUNK_MS * 8 for c in chunks)  # μ-law 8 kHz, 100 ms each
    voiced = [i for i, c in enumerate(chunks) if c.strip(b"\xff")]
    assert len(voiced) * CHUNK_MS == sim.session.utterances[0].audio_ms
    assert voiced == list(range(voiced[0], voiced[-1] + 1)) and 0 < voiced[0] and voiced[-1] < len(chunks) - 1
    assert sim.session.utterances[0].start_ms == voiced[0] * CHUNK_MS


async def test_pcm24_output_and_no_silence_when_disabled(open_live: OpenLive) -> None:
    sim = await open_live(Scenario(name="pcm", turns=[HELLO]), speed=SPEED, live_output_silence=False)
    client = await sim.connect()
    await client.start(live_session(PCM24))
    await client.stream_for(500)
    assert not client.of_type("session.output_audio.delta")
    await client.speak(HELLO.speech_ms or 0)
    await wait_spoken(sim, 1)
    expected = sim.session.utterances[0].audio_ms // CHUNK_MS
    await wait_until(lambda: len(client.of_type("session.output_audio.delta")) >= expected, 1)
    await client.stream_for(300)
    chunks = [base64.b64decode(e["delta"]) for e in client.of_type("session.output_audio.delta")]
    assert len(chunks) == expected
    assert all(len(c) == CHUNK_MS * 48 and any(c) for c in chunks)  # PCM16 24 kHz speech
