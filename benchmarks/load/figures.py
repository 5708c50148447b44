"""What one target's calls and the probe recorded, turned into the run's figures: calls
sustained, per-direction latencies in the steady window, lost frames, ``clear`` latency and
truncation error (:mod:`benchmarks.load.run` measures, this module counts)."""

from __future__ import annotations

import bisect
from typing import Any

from benchmarks.load.caller import CallStats
from simulator.probe import percentiles

CLEAR_MATCH_S = 1.0  # a clear more than this after a barge-in does not belong to it
RESPONSE_GAP_S = 0.15  # deltas further apart than this belong to different responses


def sustained(stats: CallStats, t0: float, t1: float) -> bool:
    connected = stats.connected_at is not None and stats.connected_at < t0
    return connected and stats.error is None and not stats.closed_by_service


def errors(stats: list[CallStats], t0: float, t1: float) -> list[str]:
    out = []
    for s in stats:
        if s.error is not None:
            out.append(f"call {s.tag}: {s.error}")
        elif not sustained(s, t0, t1):
            out.append(f"call {s.tag}: not connected before the window")
    return out[:20]


def _in_window(times: Any, t0: float, t1: float) -> int:
    return sum(1 for t in times if t0 <= t <= t1)


def window_latencies(stats: list[CallStats], t0: float, t1: float) -> list[float]:
    return [
        ms for s in stats for sent, ms in zip(s.out_sent, s.out_latency_ms, strict=True) if t0 <= sent <= t1
    ]


def split_out_latencies(stats: list[CallStats], t0: float, t1: float, head_deltas: int) -> dict[str, Any]:
    """Model→caller latency of each response's head (its first ``head_deltas`` deltas, sent
    together right after ``response.created`` and ``conversation.item.added``) and of the rest
    (paced): the head waits behind whatever the service does for the events before it."""
    head: list[float] = []
    paced: list[float] = []
    for s in stats:
        previous, position = -1.0, 0
        for sent, ms in zip(s.out_sent, s.out_latency_ms, strict=True):
            position = 0 if sent - previous > RESPONSE_GAP_S else position + 1
            previous = sent
            if t0 <= sent <= t1:
                (head if position < head_deltas else paced).append(ms)
    return {"response_head": percentiles(head), "paced": percentiles(paced)}


def losses(stats: list[CallStats], probe: dict[str, Any], t0: float, t1: float) -> dict[str, int]:
    """Frames stamped inside the window by one side that the other side never received."""
    lost_in = lost_out = sent_in = sent_out = 0
    for s in stats:
        seen = probe["calls"].get(str(s.tag), {"in_received": 0, "out_sent": 0})
        sent = _in_window(s.frames_sent, t0, t1)
        received_out = _in_window(s.out_sent, t0, t1)
        sent_in += sent
        sent_out += seen["out_sent"]
        lost_in += max(0, sent - seen["in_received"])
        lost_out += max(0, seen["out_sent"] - received_out)
    return {
        "caller_to_model": lost_in,
        "model_to_caller": lost_out,
        "caller_frames_sent": sent_in,
        "model_deltas_sent": sent_out,
    }


def clear_latency(stats: list[CallStats], probe: dict[str, Any]) -> dict[str, Any]:
    latencies: list[float] = []
    missing = 0
    for s in stats:
        barge_ins = probe["calls"].get(str(s.tag), {}).get("barge_ins", [])
        clears = sorted(s.clears)
        for b in barge_ins:
            i = bisect.bisect_left(clears, b)
            if i < len(clears) and clears[i] - b <= CLEAR_MATCH_S:
                latencies.append((clears[i] - b) * 1000)
            else:
                missing += 1
    return {**percentiles(latencies), "barge_ins_without_clear": missing}


def truncation_error(stats: list[CallStats], probe: dict[str, Any]) -> dict[str, Any]:
    """Each ``conversation.item.truncate`` the model got against what the caller had heard
    when the ``clear`` reached it (the nearest clear within :data:`CLEAR_MATCH_S`): truncated
    minus heard, in ms (> 0: the history claims audio nobody heard). ``abs`` for the target."""
    errors: list[float] = []
    unmatched = unmapped = 0
    for s in stats:
        seen = probe["calls"].get(str(s.tag), {})
        unmapped += seen.get("unmapped_truncations", 0)
        heard = sorted(s.heard_at_clear)
        used = [False] * len(heard)  # a clear is matched to one truncation at most
        for at, truncated_ms in sorted(seen.get("truncations", [])):
            near = [j for j, (t, _) in enumerate(heard) if not used[j] and abs(t - at) <= CLEAR_MATCH_S]
            if not near:
                unmatched += 1
                continue
            j = min(near, key=lambda k: abs(heard[k][0] - at))
            used[j] = True
            errors.append(truncated_ms - heard[j][1])
    return {
        "signed": percentiles(errors),
        "abs": percentiles(abs(e) for e in errors),
        "truncations_without_clear": unmatched,
        "unmapped_truncations": unmapped,  # the probe could not place them (whole run)
    }
