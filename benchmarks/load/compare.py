"""The service against the minimal relay (:mod:`benchmarks.minimal_relay`), measured in the
same run with the same callers, probe and options: each figure absolute for both, and the
ratio service / relay."""

from __future__ import annotations

import statistics
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


# what each (relay, service) pair reports: its CPU and the tails the targets are about
PAIR_FIGURES: Final = (
    ("cpu_per_call_minute_s", ("cpu", "service_per_call_minute_s")),
    ("caller_to_model_p99_ms", ("relay_latency_ms", "caller_to_model", "p99")),
    ("model_to_caller_p99_ms", ("relay_latency_ms", "model_to_caller", "p99")),
    ("clear_p99_ms", ("speech_started_to_clear_ms", "p99")),
)


def pair_row(n: int, service: dict[str, Any], relay: dict[str, Any]) -> dict[str, Any]:
    """One pair's figures: ``{name: [service, relay]}`` and the CPU ratio."""
    row: dict[str, Any] = {"pair": n}
    for name, path in PAIR_FIGURES:
        row[name] = [figure(service, path), figure(relay, path)]
    ours, theirs = row["cpu_per_call_minute_s"]
    row["cpu_ratio"] = round(ours / theirs, 3) if ours is not None and theirs else None
    lost = [service["lost_frames"], relay["lost_frames"]]
    row["lost_frames"] = [x["caller_to_model"] + x["model_to_caller"] for x in lost]
    row["sustained"] = [t["calls"]["sustained"] == t["calls"]["attempted"] for t in (service, relay)]
    row["service_log"] = service.get("service_log") or {}  # its warnings and errors, by level
    return row


def summarize_pairs(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Every pair, and the median over pairs of the CPU ratio and of each figure per side."""
    ratios_ = [r["cpu_ratio"] for r in rows if r["cpu_ratio"] is not None]
    median: dict[str, Any] = {
        "cpu_ratio": round(statistics.median(ratios_), 3) if ratios_ else None,
        "cpu_ratio_range": [min(ratios_), max(ratios_)] if ratios_ else None,
    }
    for name, _ in PAIR_FIGURES:
        sides = []
        for side in (0, 1):
            values = [r[name][side] for r in rows if r[name][side] is not None]
            sides.append(round(statistics.median(values), 4) if values else None)
        median[name] = sides
    return {"rows": rows, "median": median}


def format_pairs(pairs: dict[str, Any] | None) -> str:
    """The pairs as a table (service / relay in each cell) and their medians."""
    if not pairs:
        return ""
    names = [name for name, _ in PAIR_FIGURES]
    head = ("pair", *names, "cpu ratio", "lost")
    rows = [head]
    for r in pairs["rows"]:
        cells = [" / ".join(_num(v) for v in r[name]) for name in names]
        lost = " / ".join(str(x) for x in r["lost_frames"])
        rows.append((str(r["pair"]), *cells, _ratio(r["cpu_ratio"]), lost))
    m = pairs["median"]
    rows.append(("median", *(" / ".join(_num(v) for v in m[n]) for n in names), _ratio(m["cpu_ratio"]), ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    text = "\n".join("  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip() for row in rows)
    low, high = m["cpu_ratio_range"] or (None, None)
    spread = f"median {_ratio(m['cpu_ratio'])}, range {_ratio(low)}–{_ratio(high)}"
    return text + f"\nCPU ratio over {len(pairs['rows'])} pairs: {spread}"


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"
