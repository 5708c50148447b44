"""Command line: ``responder serve | simulate | call``."""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import socket
import sys
import time
from typing import Any

import structlog
from aiohttp import web
from pydantic import SecretStr

from infra.logs import configure_logging
from infra.redact import secret_values
from infra.settings import Settings
from responder.cli import supervisor as supervisor_cli
from responder.cli import trace as trace_command
from responder.cli.event_loop import EXIT_BIND_FAILED, logged_bind_failure, serve_app, tcp_port
from responder.cli.policies import add_policies_parser, run_policies

log = structlog.get_logger("cli")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="responder", description=__doc__)
    parser.add_argument("--log-file", help="also append every log event as JSON to this file")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the voice service")
    serve.add_argument("--host")
    serve.add_argument("--port", type=tcp_port)

    sim = sub.add_parser("simulate", help="run the OpenAI API simulator (a test double) standalone")
    sim.add_argument("--scenario", default="returns")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=tcp_port, default=8090)
    sim.add_argument("--speed", type=float, default=1.0)
    sim.add_argument("--probe", action="store_true", help="timed load-test model (see simulator/probe.py)")
    sim.add_argument(
        "--probe-delta-ms", type=int, default=100, choices=(20, 100), help="probe: audio per delta, ms"
    )
    sim.add_argument(
        "--probe-barge-in-every", type=int, default=2, metavar="N",
        help="probe: talk over every Nth response (0: never)",
    )  # fmt: skip
    sim.add_argument(
        "--probe-supervisor-every", type=int, default=0, metavar="N",
        help="probe: hand every Nth caller turn to the supervisor tool (0: never)",
    )  # fmt: skip

    call = sub.add_parser("call", help="place a simulated phone call through the real service")
    call.add_argument("--scenario", default="returns", help="scenario file or built-in name")
    call.add_argument("--speed", type=float, default=1.0, help="audio speed factor (1 = real time)")
    call.add_argument("--json", action="store_true", help="print the result as JSON")
    call.add_argument(
        "--engine", choices=["realtime", "live"], help="the speech engine (default: RESPONDER_ENGINE)"
    )
    trace_command.add_parser(sub)
    supervisor_cli.add_parser(sub)
    add_policies_parser(sub)

    args = parser.parse_args(argv)
    settings = Settings()
    log_file = args.log_file or settings.log_file
    configure_logging(
        settings.log_format, settings.log_level, redact=settings.log_redact_pii, log_file=log_file,
        secrets=secret_values(settings),
    )  # fmt: skip
    if args.command == "policies":
        return run_policies(args, settings)
    if args.command == "trace":
        return asyncio.run(trace_command.run(settings, args))
    if args.command == "supervisor":
        return supervisor_cli.run(settings, args)
    if args.command == "serve":
        return _serve(settings, args.host, args.port)
    if args.command == "simulate":
        return _simulate(args.scenario, args.host, args.port, args.speed, _probe_config(args))
    if args.engine:
        settings = settings.model_copy(update={"engine": args.engine})
    return asyncio.run(_call(settings, args.scenario, args.speed, args.json))


def _serve(settings: Settings, host: str | None, port: int | None) -> int:
    from responder.server.app import create_app
    from responder.server.drain import HANDLERS_AT_EXIT_S, drain_on_sigterm

    updates: dict[str, Any] = {}
    if host:
        updates["host"] = host
    if port is not None:
        updates["port"] = port
    settings = settings.model_copy(update=updates)
    if settings.uses_simulator:
        log.warning("app.no_api_key", message="OPENAI_API_KEY is not set: using the local simulator")
    app = create_app(settings)
    drain_on_sigterm(app, settings.drain_s, settings.drain_goodbye_s)
    app.on_startup.append(_freeze_heap)  # after the lifecycle's startup: services are built
    return serve_app(
        app, settings.host, settings.port,
        shutdown_timeout=HANDLERS_AT_EXIT_S,  # after a drain no call is left: nothing to wait for
    )  # fmt: skip


async def _freeze_heap(app: web.Application) -> None:
    from responder.server.warmup import freeze_heap

    log.info("app.heap_frozen", objects=freeze_heap())


def _probe_config(args: argparse.Namespace) -> Any:
    """The probe model's :class:`simulator.entry.ProbeConfig`, or False without ``--probe``."""
    if not args.probe:
        return False
    from simulator.entry import ProbeConfig

    return ProbeConfig(
        delta_ms=args.probe_delta_ms,
        barge_in_every=args.probe_barge_in_every,
        supervisor_every=args.probe_supervisor_every,
    )


def _simulate(scenario: str, host: str, port: int, speed: float, probe: Any = False) -> int:
    from simulator.entry import serve_simulator

    url = f"http://{host}:{port}/v1"
    log.info("simulator.ready", url=url, scenario=scenario, speed=speed, probe=bool(probe))
    try:
        serve_simulator(scenario, host, port, speed, probe=probe)
    except OSError as exc:
        if not logged_bind_failure(exc, host, port):
            raise
        return EXIT_BIND_FAILED
    return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _call(settings: Settings, scenario_name: str, speed: float, as_json: bool) -> int:
    """Start the service in-process, call it like Twilio would, print what Redis recorded."""
    from responder.runtime.services import SERVICES
    from responder.server.app import create_app
    from simulator.entry import load_scenario, place_call

    scenario = load_scenario(scenario_name)
    if settings.uses_simulator:
        log.warning("app.no_api_key", message="OPENAI_API_KEY is not set: using the local simulator")
    port = _free_port()
    token = (
        settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else secrets.token_hex(16)
    )
    settings = settings.model_copy(
        update={
            "host": "127.0.0.1",
            "port": port,
            "public_url": f"http://127.0.0.1:{port}",
            "twilio_auth_token": SecretStr(token),
            "simulator_scenario": scenario_name,
            "simulator_speed": speed,
        }
    )
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        started = time.monotonic()
        report = await place_call(settings.local_url(), scenario, auth_token=token, speed=speed)
        elapsed = time.monotonic() - started
        await asyncio.sleep(0.2)  # let the service record the hang-up
        history = app[SERVICES].history
        items = await history.get_items(report.call_sid)
        decisions = await history.get_decisions(report.call_sid)
        engine = (await history.get_meta(report.call_sid)).get("engine", settings.engine)
    finally:
        await runner.cleanup()
    if as_json:
        print(
            json.dumps(
                {
                    "call_id": report.call_sid,
                    "engine": engine,
                    "duration_s": round(elapsed, 2),
                    "items": [i.model_dump(mode="json") for i in items],
                    "decisions": [d.model_dump(mode="json") for d in decisions],
                },
                indent=2,
            )
        )
    else:
        print(format_transcript(report.call_sid, elapsed, items, decisions, engine))
    if not items:
        log.error("call.nothing_recorded", call_id=report.call_sid)
        return 1
    return 0


def format_transcript(
    call_id: str, elapsed: float, items: list[Any], decisions: list[Any], engine: str = "realtime"
) -> str:
    lines = [
        f"\nCall {call_id} ({engine}): {len(items)} items, {len(decisions)} supervisor decisions, "
        f"{elapsed:.1f} s",
        "",
    ]
    for item in items:
        label, text = _describe(item)
        lines.append(f"  {label:<12} {text}")
    if decisions:
        lines += ["", "Supervisor decisions:"]
    for d in decisions:
        tools = ", ".join(f"{t.name}({_short(t.arguments)}) {t.ms:.0f} ms" for t in d.tool_calls)
        lines.append(
            f"  {d.decision_id}  outcome={d.outcome} rounds={d.rounds} latency={d.latency_ms:.0f} ms "
            f"policies={','.join(d.policy_labels()) or '-'}"
        )
        lines.append(f"      tools: {tools or '-'}")
        lines.append(f"      text:  {d.text}")
    return "\n".join(lines)


def _describe(item: Any) -> tuple[str, str]:
    if item.kind == "message":
        suffix = f"  [interrupted at {item.audio_end_ms} ms]" if item.status == "interrupted" else ""
        return f"[{item.role}]", f"{item.text or '…'}{suffix}"
    if item.kind == "function_call":
        return "[tool call]", f"{item.name}({item.arguments})"
    if item.kind == "function_call_output":
        return "[tool out]", item.output or ""
    if item.kind == "decision":
        policies = ",".join(item.meta.get("policies", [])) or "-"
        return (
            "[decision]",
            f"{item.meta.get('outcome')} policies={policies} {item.meta.get('latency_ms')} ms",
        )
    if item.kind == "hold_line":
        return "[hold line]", item.text or ""
    return f"[{item.kind}]", item.text or ""


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


if __name__ == "__main__":
    sys.exit(main())
