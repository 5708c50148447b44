"""One load run: simulator and service as their own processes, N paced Twilio calls from here.

Timeline: start the simulator (probe mode, talking as the run's options say) → with a
baseline, the minimal relay (:mod:`benchmarks.minimal_relay`) is measured first, then stopped
→ the service; each target: one warm-up call → idle (RSS baseline) → N calls started,
staggered → all connected, a short settle → the **steady window** (CPU, RSS, latencies,
losses are counted for frames stamped inside it) → a drain second → calls hang up → the
target stopped (the service's Redis keys deleted) → optional supervisor measurement.

The result is the service's figures at the top level, the baseline's under ``baseline``,
and ``ratio`` (service / baseline) for each figure both have.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp
from redis.asyncio import Redis

from benchmarks.load.caller import LoadCall
from benchmarks.load.compare import pair_row, ratios, summarize_pairs
from benchmarks.load.figures import (
    clear_latency,
    errors,
    losses,
    split_out_latencies,
    sustained,
    truncation_error,
    window_latencies,
)
from benchmarks.load.procs import Proc, cpu_seconds, cpu_split, free_port, rss_mib, start, wait_ready
from benchmarks.load.supervisor_bench import supervisor_overhead
from simulator.probe import LEAD_MS, ProbeConfig, percentiles

REDIS_PREFIX = "loadgen"
Engine = Literal["realtime", "live"]
PROBLEM_LEVELS = ("warning", "error", "critical")  # the service log's levels the report counts


@dataclass
class LoadConfig:
    calls: int = 40
    window_s: float = 60.0
    ramp_s: float | None = None  # spread of the call starts; calls × 0.1 s when unset
    settle_s: float = 3.0
    warmup_s: float = 3.0  # one call, before the baseline
    idle_s: float = 3.0  # quiet after it: the service's idle CPU and RSS baseline
    redis_url: str = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    supervisor_history: int = 0  # > 0: also measure Supervisor.decide with this many items
    supervisor_runs: int = 100
    profile: Path | None = None  # py-spy record of the service over the window (collapsed stacks)
    cprofile: Path | None = None  # cProfile of the whole service process (deterministic, slower)
    log_dir: Path | None = None
    connect_timeout_s: float = 30.0
    nice: int | None = None  # scheduling priority of this process and the two it starts
    delta_ms: int = 100  # the probe model's audio per output delta (20 or 100)
    supervisor_every: int = 0  # every Nth caller turn through the supervisor tool; 0: never
    barge_in_every: int = 2  # every Nth response talked over; 0: never
    production_logs: bool = True  # the service's JSON logs at log_level to its stdout (a file)
    log_level: str = "INFO"
    baseline: bool = True  # measure the minimal relay first, same options
    baseline_socket: str = "aiohttp"  # its model WebSocket: aiohttp's, or the openai SDK's
    service_env: dict[str, str] = field(default_factory=dict)  # extra RESPONDER_* settings
    # the supervisor as its own process (`responder supervisor serve`, RESPONDER_SUPERVISOR_URL),
    # as in deploy/compose.yaml: its CPU is reported beside the service's, not in it
    supervisor_process: bool = False
    # the service's engine(s), each measured in turn (the first's figures at the top level); the
    # probe speaks both the Realtime and the GPT-Live primary WebSocket, the relay Realtime only
    engines: tuple[Engine, ...] = ("realtime",)
    # > 1: that many (relay, service) pairs in all, the order alternating; each pair's CPU and
    # tails and the median ratio are reported (one run's ratio moves with the machine's noise)
    pairs: int = 1

    def probe(self) -> ProbeConfig:
        return ProbeConfig(self.delta_ms, self.barge_in_every, self.supervisor_every)

    def options(self) -> dict[str, Any]:
        """What the run measured, as reported with its figures."""
        return {
            "calls": self.calls, "window_s": self.window_s, "delta_ms": self.delta_ms,
            "supervisor_every": self.supervisor_every, "barge_in_every": self.barge_in_every,
            "production_logs": self.production_logs,
            "log_level": self.log_level if self.production_logs else "WARNING",
            "baseline": self.baseline, "baseline_socket": self.baseline_socket,
            "service_env": dict(self.service_env),
            "supervisor_process": self.supervisor_process,
            "engines": list(self.engines), "pairs": self.pairs,
        }  # fmt: skip


async def run_load(cfg: LoadConfig) -> dict[str, Any]:
    cfg.probe()  # options out of range fail here, not in the simulator process
    if not cfg.engines or len(set(cfg.engines)) != len(cfg.engines):
        raise ValueError(f"engines: one or more distinct, not {cfg.engines}")
    if cfg.pairs < 1 or (cfg.pairs > 1 and not cfg.baseline):
        raise ValueError(f"pairs: 1, or more with the baseline, not {cfg.pairs}")
    if cfg.pairs > 1 and (cfg.profile or cfg.cprofile):  # it would weigh on the first pair only
        raise ValueError("pairs: no --profile or --cprofile with more than one pair")
    if cfg.nice is not None:  # other jobs on the machine: keep their scheduling out of latencies
        os.setpriority(os.PRIO_PROCESS, 0, cfg.nice)  # inherited by the processes started below
    with contextlib.ExitStack() as stack:
        if cfg.log_dir is None:
            log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="loadgen-")))
        else:
            log_dir = cfg.log_dir
            log_dir.mkdir(parents=True, exist_ok=True)
        sim_port = free_port()
        probe_args = [
            "--probe", "--probe-delta-ms", str(cfg.delta_ms),
            "--probe-barge-in-every", str(cfg.barge_in_every),
            "--probe-supervisor-every", str(cfg.supervisor_every),
        ]  # fmt: skip
        sim = start(
            "simulator",
            ["simulate", "--scenario", "returns", "--port", str(sim_port), *probe_args],
            {"RESPONDER_LOG_LEVEL": "WARNING"},
            f"http://127.0.0.1:{sim_port}",
            log_dir,
        )
        stack.callback(sim.stop)
        await wait_ready(sim, "/_probe")
        token = secrets.token_hex(16)
        baseline = None
        if cfg.baseline:
            baseline = await _relay_figures(cfg, sim, token, log_dir, _relay_profile(cfg.profile))
        by_engine: dict[str, dict[str, Any]] = {}
        for n, engine in enumerate(cfg.engines):  # one service process per engine, in turn
            name = "service" if n == 0 else f"service-{engine}"
            profile = cfg.profile if n == 0 else None
            figures = await _service_figures(cfg, sim, token, log_dir, engine, name, profile)
            figures["ratio"] = ratios(figures, baseline) if baseline is not None else None
            by_engine[engine] = figures
        pairs = None
        if baseline is not None and cfg.pairs > 1:
            first = by_engine[cfg.engines[0]]
            pairs = await _more_pairs(cfg, sim, token, log_dir, first, baseline)
        result = by_engine.pop(cfg.engines[0])
        result["other_engines"] = by_engine  # measured after the first, same options
        if cfg.supervisor_history > 0:
            result["supervisor"] = await supervisor_overhead(
                cfg.redis_url, sim.url + "/v1", items=cfg.supervisor_history, runs=cfg.supervisor_runs
            )
        result["log_dir"] = str(log_dir) if cfg.log_dir is not None else None
        result["options"] = cfg.options()
        result["baseline"] = baseline
        result["pairs"] = pairs
        return result
    raise AssertionError("unreachable")  # pragma: no cover - ExitStack does not swallow


async def _relay_figures(
    cfg: LoadConfig, sim: Proc, token: str, log_dir: Path, profile: Path | None, name: str = "relay"
) -> dict[str, Any]:
    relay = _start_relay(sim, log_dir, cfg.baseline_socket, name)
    try:
        await wait_ready(relay, "/readyz")
        return await _measure(cfg, sim, relay, token, profile=profile)
    finally:
        relay.stop()


async def _service_figures(
    cfg: LoadConfig, sim: Proc, token: str, log_dir: Path, engine: str, name: str, profile: Path | None
) -> dict[str, Any]:
    """One service process (and its supervisor process, if asked for) under the N calls."""
    side = _start_supervisor(cfg, sim, log_dir, name + "-supervisor") if cfg.supervisor_process else None
    try:
        if side is not None:
            await wait_ready(side, "/readyz")
        svc = _start_service(cfg, sim, token, log_dir, engine, name, supervisor=side)
        try:
            await wait_ready(svc, "/readyz")
            figures = await _measure(cfg, sim, svc, token, profile=profile, side=side)
        finally:
            svc.stop()
    finally:
        if side is not None:
            side.stop()
        await _delete_keys(cfg.redis_url, REDIS_PREFIX)
    figures["engine"] = engine
    figures["service_log"] = _log_counts(svc.log_path, "level", PROBLEM_LEVELS)
    figures["service_log_lines"] = _line_count(svc.log_path)
    figures["supervisor_process_log"] = None if side is None else _log_counts(side.log_path, "event")
    return figures


async def _more_pairs(
    cfg: LoadConfig, sim: Proc, token: str, log_dir: Path, service: dict[str, Any], relay: dict[str, Any]
) -> dict[str, Any]:
    """``cfg.pairs`` − 1 more (relay, service) pairs after the first, each side a new process,
    the order alternating (service first in the 2nd, 4th, …) so that a machine getting slower
    or faster over the run does not favour one side; every pair's figures and the median."""
    rows = [pair_row(1, service, relay)]
    engine = cfg.engines[0]
    for n in range(2, cfg.pairs + 1):
        if n % 2 == 0:
            svc = await _service_figures(cfg, sim, token, log_dir, engine, f"service-pair{n}", None)
            base = await _relay_figures(cfg, sim, token, log_dir, None, f"relay-pair{n}")
        else:
            base = await _relay_figures(cfg, sim, token, log_dir, None, f"relay-pair{n}")
            svc = await _service_figures(cfg, sim, token, log_dir, engine, f"service-pair{n}", None)
        rows.append(pair_row(n, svc, base))
    return summarize_pairs(rows)


def _start_relay(sim: Proc, log_dir: Path, socket: str, name: str) -> Proc:
    port = free_port()
    ws_url = "ws" + sim.url.removeprefix("http") + "/v1/realtime"
    args = ["--port", str(port), "--realtime-url", ws_url, "--model-socket", socket]
    return start(name, args, {}, f"http://127.0.0.1:{port}", log_dir, module="benchmarks.minimal_relay")


def _common_env(cfg: LoadConfig, sim: Proc) -> dict[str, str]:
    """What the service and the supervisor process share: the probe as OpenAI, Redis, logs."""
    return {
        "OPENAI_API_KEY": "sk-loadgen-not-a-real-key",
        "OPENAI_BASE_URL": sim.url + "/v1",
        "REDIS_URL": cfg.redis_url,
        "RESPONDER_HOST": "127.0.0.1",
        "RESPONDER_REDIS_PREFIX": REDIS_PREFIX,
        # production: JSON lines on stdout (here a file), INFO; off: warnings and errors only
        "RESPONDER_LOG_FORMAT": "json",
        "RESPONDER_LOG_LEVEL": cfg.log_level if cfg.production_logs else "WARNING",
    }


def _start_supervisor(cfg: LoadConfig, sim: Proc, log_dir: Path, name: str) -> Proc:
    port, token = free_port(), secrets.token_hex(24)
    env = {**_common_env(cfg, sim), "RESPONDER_SUPERVISOR_TOKEN": token}
    url = f"http://127.0.0.1:{port}"
    proc = start(name, ["supervisor", "serve", "--port", str(port)], env, url, log_dir)
    proc.env = {"RESPONDER_SUPERVISOR_URL": proc.url, "RESPONDER_SUPERVISOR_TOKEN": token}
    return proc


def _start_service(
    cfg: LoadConfig, sim: Proc, token: str, log_dir: Path, engine: str, name: str, *, supervisor: Proc | None
) -> Proc:
    port = free_port()
    env = {
        **_common_env(cfg, sim),
        "TWILIO_AUTH_TOKEN": token,
        "TWILIO_ACCOUNT_SID": "",
        "RESPONDER_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "RESPONDER_MAX_CONCURRENT_CALLS": str(cfg.calls + 10),
        "RESPONDER_ENGINE": engine,
        **(supervisor.env if supervisor is not None else {}),
        **cfg.service_env,
    }
    return start(
        name,
        ["serve", "--port", str(port)],
        env,
        f"http://127.0.0.1:{port}",
        log_dir,
        python=["-m", "cProfile", "-o", str(cfg.cprofile)] if cfg.cprofile and name == "service" else (),
    )


async def _measure(
    cfg: LoadConfig, sim: Proc, svc: Proc, token: str, *, profile: Path | None = None,
    side: Proc | None = None,
) -> dict[str, Any]:
    """One target (``svc``: the service or the relay) under N calls; its figures (``side``: the
    supervisor process, whose CPU is reported beside the target's; ``profile``: where py-spy's
    collapsed stacks of the target over the window go)."""
    n = cfg.calls
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        warm = LoadCall(0, svc.url, token)
        warm_task = asyncio.create_task(warm.run(http))
        await asyncio.sleep(cfg.warmup_s)
        warm.finish.set()
        await warm_task
        await asyncio.sleep(cfg.idle_s / 3)  # the warm-up call's end settles
        idle_cpu0, idle_t0 = cpu_seconds(svc.pid), time.monotonic()
        await asyncio.sleep(cfg.idle_s * 2 / 3)
        idle_cores = (cpu_seconds(svc.pid) - idle_cpu0) / (time.monotonic() - idle_t0)
        rss_idle = rss_mib(svc.pid)

        calls = [LoadCall(i + 1, svc.url, token, phase_s=i * 0.02 / n) for i in range(n)]
        ramp_s = cfg.ramp_s if cfg.ramp_s is not None else 0.1 * n
        tasks = []
        for i, call in enumerate(calls):
            tasks.append(asyncio.create_task(call.run(http)))
            await asyncio.sleep(ramp_s / n if i < n - 1 else 0)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(cfg.connect_timeout_s):
                await asyncio.gather(*(c.connected.wait() for c in calls))
        await asyncio.sleep(cfg.settle_s)

        load_before = os.getloadavg()
        t0 = time.monotonic()
        cpu0 = {
            "service": cpu_seconds(svc.pid),
            "simulator": cpu_seconds(sim.pid),
            "generator": cpu_seconds(),
            "supervisor": cpu_seconds(side.pid) if side is not None else 0.0,
        }
        split0 = cpu_split(svc.pid)
        profiler = _start_profiler(profile, cfg.window_s, svc.pid) if profile else None
        rss_peak = rss_mib(svc.pid)
        while time.monotonic() < t0 + cfg.window_s:
            await asyncio.sleep(min(1.0, max(0.0, t0 + cfg.window_s - time.monotonic())))
            rss_peak = max(rss_peak, rss_mib(svc.pid))
        t1 = time.monotonic()
        cpu1 = {
            "service": cpu_seconds(svc.pid),
            "simulator": cpu_seconds(sim.pid),
            "generator": cpu_seconds(),
            "supervisor": cpu_seconds(side.pid) if side is not None else 0.0,
        }
        split1 = cpu_split(svc.pid)
        rss_loaded = rss_mib(svc.pid)
        load_after = os.getloadavg()
        await asyncio.sleep(1.0)  # frames stamped before t1 arrive
        async with http.get(sim.url + "/_probe", params={"t0": str(t0), "t1": str(t1)}) as resp:
            probe = await resp.json()
        for call in calls:
            call.finish.set()
        stats = await asyncio.gather(*tasks)
        if profiler is not None:
            profiler.wait(30)
    window = t1 - t0
    cpu = {name: cpu1[name] - cpu0[name] for name in cpu0}
    kept = [s for s in stats if sustained(s, t0, t1)]
    call_minutes = len(kept) * window / 60
    return {
        "calls": {"attempted": n, "sustained": len(kept), "errors": errors(stats, t0, t1)},
        "window_s": round(window, 2),
        "cpu": {
            "service_s": round(cpu["service"], 3),
            "service_per_call_minute_s": round(cpu["service"] / call_minutes, 4) if call_minutes else None,
            "service_cores": round(cpu["service"] / window, 3),
            "service_user_s": round(split1[0] - split0[0], 3),
            "service_system_s": round(split1[1] - split0[1], 3),
            "service_idle_cores": round(idle_cores, 4),
            "simulator_cores": round(cpu["simulator"] / window, 3),
            "generator_cores": round(cpu["generator"] / window, 3),
            "supervisor_process_cores": round(cpu["supervisor"] / window, 3) if side is not None else None,
        },
        "rss_mib": {
            "idle": round(rss_idle, 2),
            "loaded": round(rss_loaded, 2),
            "peak": round(rss_peak, 2),
            "growth_per_call": round((rss_loaded - rss_idle) / n, 3),
        },
        "relay_latency_ms": {
            "caller_to_model": probe["in_latency_ms"],
            "model_to_caller": percentiles(window_latencies(stats, t0, t1)),
            "model_to_caller_split": split_out_latencies(stats, t0, t1, LEAD_MS // cfg.delta_ms),
        },
        "lost_frames": losses(stats, probe, t0, t1),
        "speech_started_to_clear_ms": clear_latency(stats, probe),
        "truncation_error_ms": truncation_error(stats, probe),
        "supervisor_turns": probe["handovers"],
        "load_average": {
            "before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in load_after],
        },
        "cpu_count": os.cpu_count(),
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "profile": str(profile) if profiler is not None else None,
    }


def _relay_profile(profile: Path | None) -> Path | None:
    """Where the minimal relay's stacks go beside the service's: ``NAME.relay.EXT``."""
    return None if profile is None else profile.with_name(f"{profile.stem}.relay{profile.suffix}")


def _start_profiler(profile: Path, window_s: float, pid: int) -> subprocess.Popen[bytes]:
    profile.parent.mkdir(parents=True, exist_ok=True)
    # --gil: samples of the thread holding the GIL only, i.e. of Python CPU (collapse.py)
    args = ["py-spy", "record", "-p", str(pid), "-d", str(int(window_s)), "-r", "500", "--gil", "-f", "raw"]
    py_spy = Path(sys.executable).parent / "py-spy"
    if py_spy.exists():
        args[0] = str(py_spy)
    return subprocess.Popen(
        [*args, "-o", str(profile), "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _log_counts(path: Path, key: str, values: tuple[str, ...] | None = None) -> dict[str, int]:
    """How often each value of ``key`` (only ``values``, when given) occurs in a JSON-lines log;
    lines that are not JSON objects (a traceback) are skipped."""
    counts: dict[str, int] = {}
    for line in path.read_text(errors="replace").splitlines():
        try:
            value = json.loads(line).get(key)
        except (ValueError, AttributeError):
            continue
        if isinstance(value, str) and (values is None or value in values):
            counts[value] = counts.get(value, 0) + 1
    return counts


def _line_count(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


async def _delete_keys(redis_url: str, prefix: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        keys = [k async for k in redis.scan_iter(f"{prefix}:*")]
        for i in range(0, len(keys), 500):
            await redis.delete(*keys[i : i + 500])
    finally:
        await redis.aclose()
