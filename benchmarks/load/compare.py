"""The service against the minimal relay (:mod:`benchmarks.minimal_relay`), measured in the
same run with the same callers, probe and options: each figure absolute for both, and the
ratio service / relay."""

from __future__ import annotations

from typing import Any, Final

# (label, path into a target's result); a path's last step may be a percentile name
FIGURES: Final = (
    ("CPU-s per call-minute", ("cpu", "service_per_call_minute_s")),
    ("CPU (cores)", ("cpu", "service_cores")),
    ("RSS loaded (MiB)", ("rss_mib", "loaded")),
    ("RSS growth per call (MiB)", ("rss_mib", "growth_per_call")),
    ("relay caller→model p50 (ms)", ("relay_latency_ms", "caller_to_model", "p50")),
    ("relay caller→model p99 (ms)", ("relay_latency_ms", "caller_to_model", "p99")),
    ("relay model→caller p50 (ms)", ("relay_latency_ms", "model_to_caller", "p50")),
    ("relay model→caller p99 (ms)", ("relay_latency_ms", "model_to_caller", "p99")),
    ("speech_started→clear p50 (ms)", ("speech_started_to_clear_ms", "p50")),
    ("speech_started→clear p99 (ms)", ("speech_started_to_clear_ms", "p99")),
    ("hand-over→answer p50 (ms)", ("supervisor_turns", "answer_ms", "p50")),
    ("hand-over→answer p99 (ms)", ("supervisor_turns", "answer_ms", "p99")),
)


def figure(result: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = result
    for step in path:
        if not isinstance(value, dict) or step not in value:
            return None
        value = value[step]
    return float(value) if isinstance(value, int | float) else None


def ratios(service: dict[str, Any], baseline: dict[str, Any]) -> dict[str, float | None]:
    """``label → service / baseline`` for every figure of :data:`FIGURES` (None where either is
    missing, e.g. no barge-in in the window, or the baseline's is 0)."""
    out: dict[str, float | None] = {}
    for label, path in FIGURES:
        ours, theirs = figure(service, path), figure(baseline, path)
        out[label] = round(ours / theirs, 2) if ours is not None and theirs else None
    return out


def format_comparison(result: dict[str, Any]) -> str:
    """Both targets' figures side by side (every engine measured), and service / relay."""
    baseline = result.get("baseline")
    if not baseline:
        return ""
    services = [result, *(result.get("other_engines") or {}).values()]
    names = [str(s.get("engine", "realtime")) for s in services]
    head = [*(f"service ({n})" for n in names), "minimal relay", *(f"ratio ({n})" for n in names)]
    rows = [("", *head)]
    for label, path in FIGURES:
        ratios_ = [(s.get("ratio") or {}).get(label) for s in services]
        cells = [_num(figure(s, path)) for s in services] + [_num(figure(baseline, path))]
        rows.append((label, *cells, *("—" if r is None else f"{r:.2f}×" for r in ratios_)))
    targets = [*services, baseline]
    rows.append(
        ("calls sustained", *(f"{t['calls']['sustained']} / {t['calls']['attempted']}" for t in targets))
    )
    lost = [t["lost_frames"] for t in targets]
    rows.append(("lost frames in / out", *(f"{x['caller_to_model']} / {x['model_to_caller']}" for x in lost)))
    columns = max(len(r) for r in rows)
    rows = [(*r, *([""] * (columns - len(r)))) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(columns)]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows)


def _num(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.4g}"
