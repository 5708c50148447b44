"""Load generator: N concurrent simulated Twilio calls against one service process.

    .venv/bin/python -m benchmarks.loadgen --calls 40 --window 60 --delta-ms 20 \
        --supervisor-every 3 [--barge-in-every 2] [--supervisor-history 200] [--json]

Starts the OpenAI simulator in probe mode (``responder simulate --probe``, talking in
``--delta-ms`` deltas, handing every ``--supervisor-every``-th caller turn to the supervisor
tool, talked over every ``--barge-in-every``-th response), then — unless ``--no-baseline`` —
the minimal relay (``benchmarks/minimal_relay.py``) and, after it, the service (``responder
serve``, pointed at that simulator, Redis from ``REDIS_URL``, JSON logs at ``--log-level``
unless ``--no-production-logs``) as their own processes, and places the calls from this
process: signed webhook, media stream, 20 ms μ-law frames in real time, mark echoes. Reports
calls sustained, CPU seconds per call-minute and RSS growth per call, relay latency per
direction, lost frames, speech_started → ``clear`` latency, hand-over → answer, load average,
for the service and the relay, with their ratio; with ``--supervisor-history`` also the
supervisor's overhead beyond model time. See BENCHMARKS.md for the targets and results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

import structlog

from benchmarks.load.compare import format_comparison, format_pairs
from benchmarks.load.run import LoadConfig, run_load

TARGETS = {  # issue 6, item 6
    "cpu_per_call_minute_s": 0.30,
    "rss_growth_per_call_mib": 0.5,
    "relay_p99_ms": 5.0,
    "supervisor_overhead_p99_ms": 5.0,
    "clear_ms": 2.0,
}


def _lat(d: dict[str, Any]) -> str:
    if not d.get("n"):
        return "no samples"
    return f"p50 {d['p50']:.2f}  p99 {d['p99']:.2f}  max {d['max']:.2f}  (n={d['n']})"


def _truncation(t: dict[str, Any] | None) -> str:
    if not t or not t["signed"].get("n"):
        return "no truncations"
    signed, size = t["signed"], t["abs"]
    return (
        f"|p50| {size['p50']:.2f}  |p99| {size['p99']:.2f}  |max| {size['max']:.2f}"
        f"  (signed p50 {signed['p50']:.2f}, n={signed['n']})"
        f"  without clear {t['truncations_without_clear']}, unmapped {t['unmapped_truncations']}"
        "  (target |max| ≤ 20)"
    )


def format_report(r: dict[str, Any]) -> str:
    cpu, rss, lost = r["cpu"], r["rss_mib"], r["lost_frames"]
    lat = r["relay_latency_ms"]
    rows = [
        ("calls sustained / attempted", f"{r['calls']['sustained']} / {r['calls']['attempted']}"),
        ("steady window", f"{r['window_s']:.1f} s"),
        ("service CPU-s per call-minute", f"{cpu['service_per_call_minute_s']}  (target ≤ 0.30)"),
        (
            "service CPU (cores)",
            f"{cpu['service_cores']}  (user {cpu['service_user_s']} s, system {cpu['service_system_s']} s;"
            f" idle service {cpu['service_idle_cores']})",
        ),
        ("simulator / generator CPU (cores)", f"{cpu['simulator_cores']} / {cpu['generator_cores']}"),
        *(
            [("supervisor process CPU (cores)", f"{cpu['supervisor_process_cores']}  (not in the service's)")]
            if cpu.get("supervisor_process_cores") is not None
            else []
        ),
        ("service RSS idle → loaded (MiB)", f"{rss['idle']} → {rss['loaded']} (peak {rss['peak']})"),
        ("RSS growth per call (MiB)", f"{rss['growth_per_call']}  (target ≤ 0.5)"),
        ("relay caller→model (ms)", _lat(lat["caller_to_model"]) + "  (target p99 ≤ 5)"),
        ("relay model→caller (ms)", _lat(lat["model_to_caller"]) + "  (target p99 ≤ 5)"),
        ("  of which response heads (ms)", _lat(lat["model_to_caller_split"]["response_head"])),
        ("  of which paced deltas (ms)", _lat(lat["model_to_caller_split"]["paced"])),
        (
            "lost frames caller→model",
            f"{lost['caller_to_model']} of {lost['caller_frames_sent']}  (target 0)",
        ),
        ("lost frames model→caller", f"{lost['model_to_caller']} of {lost['model_deltas_sent']}  (target 0)"),
        ("hand-overs asked / answered", _handovers(r["supervisor_turns"])),
        ("hand-over → answer asked (ms)", _lat(r["supervisor_turns"]["answer_ms"])),
        (
            "speech_started → clear (ms)",
            _lat(r["speech_started_to_clear_ms"])
            + f"  missing {r['speech_started_to_clear_ms']['barge_ins_without_clear']}  (target ≤ 2)",
        ),
        ("truncated − heard (ms)", _truncation(r.get("truncation_error_ms"))),
        (
            "load average before / after",
            f"{r['load_average']['before']} / {r['load_average']['after']}"
            f"  ({r['cpu_count']} CPUs, nice {r['nice']})",
        ),
    ]
    sup = r.get("supervisor")
    if sup:
        rows.append(
            (
                f"supervisor overhead, {sup['history_items']} items (ms)",
                _lat(sup["overhead_ms"]) + "  (target p99 ≤ 5)",
            )
        )
        rows.append(("supervisor decide total (ms)", _lat(sup["total_ms"]) + f"  outcomes {sup['outcomes']}"))
    if r["calls"]["errors"]:
        rows.append(("call errors", "; ".join(r["calls"]["errors"][:5])))
    if r.get("service_log"):
        rows.append(("service log warnings/errors", json.dumps(r["service_log"])))
    if "service_log_lines" in r:
        rows.append(("service log lines (whole run)", str(r["service_log_lines"])))
    if "options" in r:
        rows.insert(0, ("options", json.dumps(r["options"])))
    if "engine" in r:
        rows.insert(0, ("service engine", r["engine"]))
    width = max(len(k) for k, _ in rows)
    text = "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
    for other in (r.get("other_engines") or {}).values():  # the next engine, same run and options
        text += "\n\n" + format_report(other)
    comparison = format_comparison(r)
    socket = (r.get("options") or {}).get("baseline_socket", "aiohttp")
    head = f"\n\nservice against the minimal relay (model socket: {socket}), same run:\n"
    text += head + comparison if comparison else ""
    pairs = format_pairs(r.get("pairs"))
    return text + ("\n\n(relay, service) pairs, service / relay in each cell:\n" + pairs if pairs else "")


def _handovers(h: dict[str, Any]) -> str:
    text = f"{h['asked']} / {h['answered']}"
    if h["unanswered"] or h["pending"]:
        text += f"  (unanswered {h['unanswered']}, pending {h['pending']})"
    return text + f"  (hold lines {h['hold_lines']})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="loadgen", description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--window", type=float, default=60.0, help="steady-state window, seconds")
    parser.add_argument("--ramp", type=float, default=None, help="spread of call starts, seconds")
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--supervisor-history", type=int, default=0, metavar="ITEMS")
    parser.add_argument("--supervisor-runs", type=int, default=100)
    parser.add_argument(
        "--profile", type=Path, default=None, help="py-spy stacks of the service (the relay: NAME.relay.EXT)"
    )
    parser.add_argument("--cprofile", type=Path, default=None, help="cProfile stats file of the service")
    parser.add_argument("--log-dir", type=Path, default=None, help="keep the processes' logs here")
    parser.add_argument("--nice", type=int, default=None, help="priority of the 3 processes (<0: root)")
    parser.add_argument("--delta-ms", type=int, choices=(20, 100), default=100, help="model audio per delta")
    parser.add_argument(
        "--supervisor-every",
        type=int,
        default=0,
        metavar="N",
        help="every Nth caller turn via the supervisor",
    )
    parser.add_argument(
        "--barge-in-every", type=int, default=2, metavar="N", help="talk over every Nth response"
    )
    parser.add_argument(
        "--production-logs", action=argparse.BooleanOptionalAction, default=True,
        help="the service's JSON logs at --log-level to its stdout (a file); off: warnings only",
    )  # fmt: skip
    parser.add_argument("--log-level", default="INFO", help="the service's, with production logs")
    parser.add_argument(
        "--baseline", action=argparse.BooleanOptionalAction, default=True,
        help="measure the minimal relay first (same options) and report ratios to it",
    )  # fmt: skip
    parser.add_argument(
        "--baseline-socket", choices=("aiohttp", "openai"), default="aiohttp",
        help="the minimal relay's model WebSocket: aiohttp's client, or the openai SDK's",
    )  # fmt: skip
    parser.add_argument(
        "--service-env", action="append", default=[], metavar="NAME=VALUE",
        help="a setting for the service process, e.g. RESPONDER_MARK_INTERVAL_MS=0 (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--engine", choices=("realtime", "live", "both"), default="realtime",
        help="the service's engine; both: Realtime, then GPT-Live, against the same probe",
    )  # fmt: skip
    parser.add_argument(
        "--supervisor-process", action="store_true",
        help="the supervisor as its own process (RESPONDER_SUPERVISOR_URL), its CPU reported beside",
    )  # fmt: skip
    parser.add_argument(
        "--pairs", type=int, default=1, metavar="N",
        help="N (relay, service) pairs, the order alternating; each pair and the median ratio",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    service_env = dict(pair.split("=", 1) for pair in args.service_env if "=" in pair)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    cfg = LoadConfig(
        calls=args.calls,
        window_s=args.window,
        ramp_s=args.ramp,
        settle_s=args.settle,
        supervisor_history=args.supervisor_history,
        supervisor_runs=args.supervisor_runs,
        profile=args.profile,
        cprofile=args.cprofile,
        log_dir=args.log_dir,
        nice=args.nice,
        delta_ms=args.delta_ms,
        supervisor_every=args.supervisor_every,
        barge_in_every=args.barge_in_every,
        production_logs=args.production_logs,
        log_level=args.log_level,
        baseline=args.baseline,
        baseline_socket=args.baseline_socket,
        service_env=service_env,
        supervisor_process=args.supervisor_process,
        engines=("realtime", "live") if args.engine == "both" else (args.engine,),
        pairs=args.pairs,
    )
    if args.redis_url:
        cfg.redis_url = args.redis_url
    result = asyncio.run(run_load(cfg))
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    targets = [result, *result["other_engines"].values()] + (
        [result["baseline"]] if result["baseline"] else []
    )
    pairs = result["pairs"]["rows"] if result["pairs"] else []
    every_call = all(t["calls"]["sustained"] == t["calls"]["attempted"] for t in targets)
    return 0 if every_call and all(all(r["sustained"]) for r in pairs) else 1


if __name__ == "__main__":
    sys.exit(main())
