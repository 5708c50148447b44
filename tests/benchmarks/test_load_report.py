"""The loadgen's truncation figure: each truncation the probe placed is paired with one clear
the caller recorded (the nearest within a second, each clear used once) and reported as
truncated minus heard; what cannot be paired or placed is counted, not dropped."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.load.caller import CallStats
from benchmarks.load.compare import format_pairs, pair_row, summarize_pairs
from benchmarks.load.figures import truncation_error as _truncation_error


def stats(tag: int, heard: list[tuple[float, float]]) -> CallStats:
    s = CallStats(tag=tag, call_sid=f"CA{tag}")
    s.heard_at_clear.extend(heard)
    return s


def probe(calls: dict[int, dict[str, Any]]) -> dict[str, Any]:
    return {"calls": {str(tag): seen for tag, seen in calls.items()}}


def test_pairs_each_truncation_with_the_nearest_clear_of_its_call() -> None:
    result = _truncation_error(
        [stats(1, [(10.002, 1500.0), (20.001, 9000.0)]), stats(2, [(10.0, 700.0)])],
        probe(
            {
                1: {"truncations": [(10.003, 1498.0), (20.002, 9012.5)], "unmapped_truncations": 0},
                2: {"truncations": [(10.001, 690.0)], "unmapped_truncations": 1},
            }
        ),
    )
    assert result["signed"]["n"] == 3
    assert result["signed"]["p50"] == pytest.approx(-2.0) and result["signed"]["max"] == pytest.approx(12.5)
    assert result["abs"]["max"] == pytest.approx(12.5) and result["abs"]["p50"] == pytest.approx(10.0)
    assert result["truncations_without_clear"] == 0 and result["unmapped_truncations"] == 1


def test_a_clear_is_used_once_and_a_far_one_not_at_all() -> None:
    result = _truncation_error(
        [stats(1, [(10.0, 1500.0)])],
        probe({1: {"truncations": [(10.001, 1500.0), (10.002, 1520.0), (30.0, 0.0)]}}),
    )
    assert result["signed"]["n"] == 1 and result["signed"]["max"] == 0.0
    assert result["truncations_without_clear"] == 2 and result["unmapped_truncations"] == 0


def target(cpu: float, clear_p99: float | None, lost: int = 0, sustained: int = 40) -> dict[str, Any]:
    return {
        "cpu": {"service_per_call_minute_s": cpu},
        "relay_latency_ms": {"caller_to_model": {"p99": 1.0}, "model_to_caller": {"p99": 2.0}},
        "speech_started_to_clear_ms": {"p99": clear_p99} if clear_p99 is not None else {"n": 0},
        "lost_frames": {"caller_to_model": lost, "model_to_caller": 0},
        "calls": {"attempted": 40, "sustained": sustained},
    }


def test_pairs_report_each_pair_and_the_median_ratio() -> None:
    rows = [
        pair_row(1, target(0.50, 2.5), target(0.40, 1.0)),  # 1.25×
        pair_row(2, target(0.45, 1.5), target(0.50, 1.2, lost=3, sustained=39)),  # 0.90×
        pair_row(3, target(0.44, None), target(0.40, 0.8)),  # 1.10×, no barge-in in the window
    ]
    assert [r["cpu_ratio"] for r in rows] == [1.25, 0.9, 1.1]
    assert rows[1]["lost_frames"] == [0, 3] and rows[1]["sustained"] == [True, False]
    summary = summarize_pairs(rows)
    median = summary["median"]
    assert median["cpu_ratio"] == 1.1 and median["cpu_ratio_range"] == [0.9, 1.25]
    assert median["cpu_per_call_minute_s"] == [0.45, 0.4]
    assert median["clear_p99_ms"] == [2.0, 1.0]  # the service's over the two pairs that have one
    text = format_pairs(summary)
    assert "median 1.10×, range 0.90×–1.25×" in text
    assert text.splitlines()[3].split()[:4] == ["3", "0.44", "/", "0.4"]
    assert format_pairs(None) == ""
