"""The loadgen's truncation figure: each truncation the probe placed is paired with one clear
the caller recorded (the nearest within a second, each clear used once) and reported as
truncated minus heard; what cannot be paired or placed is counted, not dropped."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.load.caller import CallStats
from benchmarks.load.run import _truncation_error


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
