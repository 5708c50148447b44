"""The GPT-Live probe model (simulator/live_probe.py) behind the real service: Twilio-style
calls with stamped audio (the load generator's caller), the service on GPT-Live, the
simulator in probe mode, a real Redis. What must hold: the probe saw each call's stamped audio,
each caller heard the probe's stamped audio, a barge-in (the caller's transcript over the
model's speech, as Live shows one) made the service clear Twilio's buffer, a delegation ran
the supervisor and its answer came back as commentary, and no frame was lost either way.
Every server event the probe sends is one the SDK's ``openai.types.live`` parses.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from openai import AsyncOpenAI
from openai.types.live import ServerEvent
from pydantic import TypeAdapter

from benchmarks.load.caller import CallStats, LoadCall
from infra.settings import Settings
from simulator.app import create_simulator_app
from simulator.live_probe import LIVE_PROBE_KEY, LiveProbeConfig
from simulator.probe import PROBE_KEY, ProbeConfig, ProbeRecorder, TagTimes, stamp
from simulator.scenario import load_scenario
from tests.support.service import AUTH_TOKEN, RunningService
from tests.support.waits import wait_until

SERVER_EVENT: TypeAdapter[Any] = TypeAdapter(ServerEvent)
TAGS = (1, 2)


async def probe_simulator(config: LiveProbeConfig) -> tuple[web.AppRunner, str]:
    app = create_simulator_app(load_scenario("returns"), probe=True)
    app[LIVE_PROBE_KEY] = config
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def simulator() -> AsyncIterator[tuple[ProbeRecorder, str]]:
    # every response talked over, every caller turn delegated: the greeting is barged in on,
    # the first turn handed over, its answer spoken (and barged in on) — all in a few seconds
    runner, url = await probe_simulator(LiveProbeConfig(delegate_every=1, barge_in_every=1))
    try:
        yield runner.app[PROBE_KEY], url
    finally:
        await runner.cleanup()


async def _events(conn: Any) -> AsyncIterator[dict[str, Any]]:
    while True:
        yield json.loads(await asyncio.wait_for(conn.recv_bytes(), 10.0))


def received(times: TagTimes, t0: float, t1: float) -> int:
    return sum(1 for sent in times.in_sent if t0 <= sent <= t1)


async def test_live_calls_through_the_probe(
    simulator: tuple[ProbeRecorder, str],
    start_service: Callable[..., Any],
    make_settings: Callable[..., Settings],
) -> None:
    recorder, url = simulator
    settings = make_settings(engine="live", openai_api_key="sk-probe-test", openai_base_url=url + "/v1")
    svc: RunningService = await start_service(settings)
    calls = [LoadCall(tag, svc.url, AUTH_TOKEN) for tag in TAGS]
    async with aiohttp.ClientSession() as http:
        tasks = [asyncio.ensure_future(call.run(http)) for call in calls]
        history = svc.services.history

        async def done() -> bool:  # every call barged in on (cleared) and its delegation answered
            for call in calls:
                times = recorder.tags.get(call.stats.tag)
                if not (call.stats.clears and times and times.answered):
                    return False
                if not [d for d in await history.get_decisions(call.stats.call_sid)]:
                    return False
            return True

        try:
            await wait_until(done, 40.0, 0.1, what="a barge-in and an answered delegation on each call")
            await asyncio.sleep(1.0)  # the answer is spoken (and heard) for a while
        finally:
            for call in calls:
                call.finish.set()
            stats: list[CallStats] = await asyncio.gather(*tasks)

    for s in stats:
        assert s.error is None, s.error
        assert s.malformed == 0
        times = recorder.tags[s.tag]
        # the probe saw the caller's stamped audio; the caller heard the probe's
        assert len(times.in_latency_ms) > 0 and min(times.in_latency_ms) >= 0
        assert len(s.out_sent) > 0
        # a barge-in (the caller's transcript over the model's speech) cleared Twilio's buffer
        assert times.barge_ins and s.clears
        assert any(0 <= c - b <= 1.0 for b in times.barge_ins for c in s.clears)
        # the delegation ran the supervisor; its answer came back as commentary and was spoken
        decisions = await svc.services.history.get_decisions(s.call_sid)
        assert decisions and all(d.trigger == "delegation" for d in decisions)
        assert decisions[0].outcome == "ok" and decisions[0].context == "Probe turn 1."
        answered_at = times.answered[0][1]
        assert any(sent > answered_at for sent in times.out_sent)
        assert any(sent > answered_at for sent in s.out_sent)
        # no frame lost in the window from the greeting (the session is up: frames before it
        # are the service's call set-up, which the load test's warm-up leaves out too) to
        # shortly before the hang-up
        assert s.connected_at is not None and s.ended_at is not None
        t0, t1 = s.connected_at, s.ended_at - 1.0
        sent = sum(1 for t in s.frames_sent if t0 <= t <= t1)
        assert sent > 100 and received(times, t0, t1) == sent
        out = sorted(t for t in times.out_sent if t0 <= t <= t1)
        assert out and sorted(t for t in s.out_sent if t0 <= t <= t1) == out

    report = recorder.report(0.0, float("inf"))
    for tag in TAGS:
        call = report["calls"][str(tag)]
        assert call["in_received"] > 0 and call["out_sent"] > 0 and call["barge_ins"]


async def test_every_server_event_is_a_live_server_event() -> None:
    """The probe over the SDK's own Live client: each event it sends parses as a ServerEvent."""
    runner, url = await probe_simulator(LiveProbeConfig(delegate_every=1, barge_in_every=1))
    try:
        client = AsyncOpenAI(base_url=url + "/v1", api_key="sk-probe-test", max_retries=0)
        session = {"model": "gpt-live-1.1", "audio": {"format": {"type": "audio/pcmu", "rate": 8000}}}
        seen: list[str] = []
        async with client.live.connect() as conn:
            await conn.send_raw('{"type":"session.start","session":' + json.dumps(session) + "}")

            async def stream() -> None:  # stamped caller audio, 20 ms frames, until cancelled
                seq = 0
                while True:
                    seq += 1
                    audio = base64.b64encode(stamp(7, seq, time.monotonic()) + b"\xff" * 142).decode()
                    await conn.send_raw('{"type":"session.input_audio.append","audio":"' + audio + '"}')
                    await asyncio.sleep(0.02)

            streamer: asyncio.Task[None] | None = None
            async for raw in _events(conn):
                event = SERVER_EVENT.validate_python(raw)
                seen.append(event.type)
                if event.type == "session.started":
                    streamer = asyncio.ensure_future(stream())
                    await conn.send_raw(
                        '{"type":"session.commentary.append","content":"Greet.","delegation_id":null,'
                        '"event_id":"evt_1"}'
                    )
                elif event.type == "session.delegation.created":
                    answer = {"type": "session.commentary.append", "content": "The answer.",
                              "delegation_id": event.delegation.id}  # fmt: skip
                    await conn.send_raw(json.dumps(answer))
                    break
            assert streamer is not None
            streamer.cancel()
            await conn.send_raw('{"type":"session.close"}')
            async for raw in _events(conn):
                event = SERVER_EVENT.validate_python(raw)
                seen.append(event.type)
                if event.type == "session.closed":
                    break
        assert runner.app[PROBE_KEY].tags[7].in_latency_ms  # the stamps were read
    finally:
        await runner.cleanup()
    for kind in ("session.started", "session.commentary.appended", "session.output_audio.delta",
                 "session.output_transcript.delta", "session.input_transcript.delta",
                 "session.delegation.created", "session.closed"):  # fmt: skip
        assert kind in seen, (kind, sorted(set(seen)))


def test_the_live_probe_follows_the_probe_settings() -> None:
    """``responder simulate --probe-…`` settings reach Live sessions as far as they apply."""
    assert LiveProbeConfig.following(ProbeConfig()) == LiveProbeConfig(3, 2, 100)
    config = LiveProbeConfig.following(ProbeConfig(delta_ms=20, barge_in_every=0, supervisor_every=2))
    assert config == LiveProbeConfig(delegate_every=2, barge_in_every=0, delta_ms=20)
    assert [n for n in range(1, 7) if LiveProbeConfig().delegates(n)] == [3, 6]
    assert not any(config.barged_in(n) for n in range(6))
