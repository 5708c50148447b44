"""``responder supervisor serve [--host H] [--port P]``: the supervisor as its own service."""

from __future__ import annotations

import argparse
import sys

import structlog

from infra.settings import Settings
from responder.cli.event_loop import serve_app, tcp_port

log = structlog.get_logger("cli")

DEFAULT_PORT = 8081


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    supervisor = sub.add_parser("supervisor", help="the supervisor as a separate HTTP service")
    actions = supervisor.add_subparsers(dest="supervisor_command", required=True)
    serve = actions.add_parser(
        "serve", help="serve POST /v1/decide (bearer token: RESPONDER_SUPERVISOR_TOKEN)"
    )
    serve.add_argument("--host", help="address to bind (default: RESPONDER_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=tcp_port, default=DEFAULT_PORT)


def run(settings: Settings, args: argparse.Namespace) -> int:
    from supervisor.service import create_service_app

    host = args.host or settings.host
    try:
        app = create_service_app(settings, host=host)
    except ValueError as exc:
        log.error("supervisor_service.refused", reason=str(exc))
        print(f"responder supervisor serve: {exc}", file=sys.stderr)
        return 2
    log.info("supervisor_service.listening", url=f"http://{host}:{args.port}")
    return serve_app(app, host, args.port, handler_cancellation=True)  # loop and logs as the voice service's
