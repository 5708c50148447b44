"""Smoke load (issues 6 and 15): three paced Twilio calls through the minimal relay (the
baseline), then a real service process on Realtime, then on GPT-Live, each with the supervisor
as its own process (``--supervisor-process``), all against the probe
simulator in 20 ms deltas with a supervisor turn and a barge-in on every response, a real
Redis and the service's production logs; the full benchmark is ``python -m benchmarks.loadgen``.

Asserts what must hold on any machine, loaded or not: every call sustained on every target,
no frame lost in either direction, every barge-in answered with a ``clear``, every hand-over
answered through the real supervisor (the relay: its fixed output), and every figure present
and plausible, with the ratios. No latency bound: a loaded 2-core CI machine can delay any frame.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.load.compare import FIGURES
from benchmarks.load.run import LoadConfig, run_load
from benchmarks.loadgen import format_report

CALLS = 3


def _check_target(result: dict[str, Any], report: str) -> None:
    assert result["calls"] == {"attempted": CALLS, "sustained": CALLS, "errors": []}, report
    lost = result["lost_frames"]
    # 4 s of 20 ms frames from 3 callers (a loaded machine may start a caller a little late)
    assert lost["caller_frames_sent"] >= CALLS * 150, report
    # 20 ms deltas: the probe talks 1.8 s of every ~3 s cycle, 50 deltas a second; 100 ms deltas
    # would be at most 43 a call in 4 s (the lead included)
    assert lost["model_deltas_sent"] >= CALLS * 75, report
    assert lost["caller_to_model"] == 0 and lost["model_to_caller"] == 0, report

    for direction in ("caller_to_model", "model_to_caller"):
        latency = result["relay_latency_ms"][direction]
        assert latency["n"] > 0 and 0 < latency["p50"] <= latency["p99"] <= latency["max"], report
    clear = result["speech_started_to_clear_ms"]  # every response is barged in on after 1.5 s
    assert clear["n"] >= 1 and clear["barge_ins_without_clear"] == 0, report
    assert 0 < clear["p50"] <= clear["p99"] <= clear["max"], report

    turns = result["supervisor_turns"]  # every caller turn is handed over
    assert turns["asked"] >= 1 and turns["unanswered"] == 0, report
    assert turns["answered"] == turns["asked"] - turns["pending"] and turns["answered"] >= 1, report
    assert 0 < turns["answer_ms"]["p50"] <= turns["answer_ms"]["max"], report

    cpu, rss = result["cpu"], result["rss_mib"]
    assert cpu["service_s"] > 0 and cpu["service_per_call_minute_s"] > 0, report
    assert cpu["simulator_cores"] > 0 and cpu["generator_cores"] > 0, report
    assert rss["idle"] > 10 and rss["loaded"] > 10, report  # a Python process is never smaller
    assert isinstance(rss["growth_per_call"], float), report


async def test_service_and_baseline_sustained_without_loss(redis_url: str) -> None:
    cfg = LoadConfig(
        calls=CALLS,
        window_s=4.0,
        ramp_s=0.3,
        settle_s=0.5,
        warmup_s=1.0,
        idle_s=1.0,
        redis_url=redis_url,
        supervisor_history=200,
        supervisor_runs=2,
        delta_ms=20,
        supervisor_every=1,
        barge_in_every=1,
        engines=("realtime", "live"),
        supervisor_process=True,  # as deployed in compose: the hand-overs answered over HTTP
    )
    started = time.monotonic()
    result = await run_load(cfg)
    wall = time.monotonic() - started
    report = format_report(result)  # the text table renders from the same dict

    assert result["options"]["delta_ms"] == 20 and result["options"]["baseline"] is True, report
    live = result["other_engines"]["live"]
    assert result["engine"] == "realtime" and live["engine"] == "live", report
    for target in (result, live, result["baseline"]):
        _check_target(target, report)
    # Realtime truncates at every barge-in: each truncation is matched to what the caller had
    # heard when its clear arrived (GPT-Live has no truncate, the relay never sends one)
    truncation = result["truncation_error_ms"]
    assert truncation["signed"]["n"] >= 1 and truncation["truncations_without_clear"] == 0, report
    assert truncation["unmapped_truncations"] == 0, report
    assert 0 <= truncation["abs"]["p50"] <= truncation["abs"]["max"], report
    assert live["truncation_error_ms"]["signed"]["n"] == 0, report
    assert result["baseline"]["truncation_error_ms"]["signed"]["n"] == 0, report
    assert "truncated − heard" in report, report
    for service in (result, live):
        assert set(service["ratio"]) == {label for label, _ in FIGURES}, report
        assert all(isinstance(r, float) and r > 0 for r in service["ratio"].values()), report
        assert service["service_log"].get("error", 0) == 0, report
        # production logging: the service's INFO lines (calls, tool calls, decisions) were written
        assert service["service_log_lines"] > 20 * CALLS, report
        # every hand-over answered by the supervisor process
        decided = service["supervisor_process_log"].get("supervisor.decision", 0)
        assert decided >= service["supervisor_turns"]["answered"], report
        assert service["cpu"]["supervisor_process_cores"] is not None, report
    assert "supervisor process CPU" in report, report
    assert "minimal relay" in report and "ratio (live)" in report, report

    supervisor = result["supervisor"]
    assert supervisor["history_items"] == 200, report
    assert supervisor["outcomes"] == {"ok": 2}, report
    assert 0 < supervisor["overhead_ms"]["p50"] < supervisor["total_ms"]["p50"], report
    assert 0 < supervisor["cpu_ms"]["p50"] <= supervisor["total_ms"]["max"], report  # CPU within wall time
    print(f"\nsmoke load: {wall:.1f} s wall\n{report}")
