"""Smoke load (issue 6): three paced Twilio calls through a real service process and the
probe simulator, a real Redis; the full benchmark is ``python -m benchmarks.loadgen``.

Asserts what must hold on any machine, loaded or not: every call sustained, no frame lost in
either direction, every barge-in answered with a ``clear``, and every figure present and
plausible. No latency bound: a loaded 2-core CI machine can delay any frame.
"""

from __future__ import annotations

import time

from benchmarks.load.run import LoadConfig, run_load
from benchmarks.loadgen import format_report


async def test_three_calls_sustained_without_loss(redis_url: str) -> None:
    cfg = LoadConfig(
        calls=3,
        window_s=5.0,
        ramp_s=0.3,
        settle_s=1.0,
        warmup_s=1.5,
        idle_s=1.5,
        redis_url=redis_url,
        supervisor_history=200,
        supervisor_runs=2,
    )
    started = time.monotonic()
    result = await run_load(cfg)
    wall = time.monotonic() - started
    report = format_report(result)  # the text table renders from the same dict

    assert result["calls"] == {"attempted": 3, "sustained": 3, "errors": []}, report
    lost = result["lost_frames"]
    # 5 s of 20 ms frames from 3 callers; the probe model talks ~60 % of the time
    assert lost["caller_frames_sent"] >= 3 * 200, report
    assert lost["model_deltas_sent"] >= 3 * 10, report
    assert lost["caller_to_model"] == 0 and lost["model_to_caller"] == 0, report

    for direction in ("caller_to_model", "model_to_caller"):
        latency = result["relay_latency_ms"][direction]
        assert latency["n"] > 0 and 0 < latency["p50"] <= latency["p99"] <= latency["max"], report
    clear = result["speech_started_to_clear_ms"]
    assert clear["barge_ins_without_clear"] == 0, report
    if clear["n"]:  # a 5 s window may or may not hold a barge-in (every second response)
        assert 0 < clear["p50"] <= clear["max"], report

    cpu, rss = result["cpu"], result["rss_mib"]
    assert cpu["service_s"] > 0 and cpu["service_per_call_minute_s"] > 0, report
    assert cpu["simulator_cores"] > 0 and cpu["generator_cores"] > 0, report
    assert rss["idle"] > 20 and rss["loaded"] > 20, report  # a Python service is never smaller
    assert isinstance(rss["growth_per_call"], float), report

    supervisor = result["supervisor"]
    assert supervisor["history_items"] == 200, report
    assert supervisor["outcomes"] == {"ok": 2}, report
    assert 0 < supervisor["overhead_ms"]["p50"] < supervisor["total_ms"]["p50"], report
    assert result["service_log"].get("error", 0) == 0, report
    print(f"\nsmoke load: {wall:.1f} s wall\n{report}")
