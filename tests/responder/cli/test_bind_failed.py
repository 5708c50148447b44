"""Both serving commands on a port that is already taken, or a host that does not resolve: one
``app.bind_failed`` log line and exit status 1, no traceback, and what startup opened is closed
again (the process exits). A port out of range is refused before anything starts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.support.paths import REPO
from tests.support.supervisor import SUPERVISOR_TOKEN

COMMANDS = {"voice": ["serve"], "supervisor": ["supervisor", "serve"], "simulator": ["simulate"]}


def _serve(command: str, redis_url: str, key_prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "RESPONDER_", "TWILIO_"))}
    env.update(
        REDIS_URL=redis_url, RESPONDER_REDIS_PREFIX=key_prefix, RESPONDER_LOG_FORMAT="json",
        RESPONDER_SUPERVISOR_TOKEN=SUPERVISOR_TOKEN,
    )  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "responder", *COMMANDS[command], *args],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=90,
    )  # fmt: skip


def _bind_failed(proc: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    [failed] = [e for e in events if e["event"] == "app.bind_failed"]
    assert failed["level"] == "error"
    return failed


@pytest.mark.parametrize("command", COMMANDS)
def test_a_taken_port_is_one_log_line_and_status_1(command: str, redis_url: str, key_prefix: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        failed = _bind_failed(_serve(command, redis_url, key_prefix, "--port", str(port)))
    assert failed["port"] == port and failed["errno"] == "EADDRINUSE"


@pytest.mark.parametrize("command", COMMANDS)
def test_a_host_that_does_not_resolve_is_one_log_line(command: str, redis_url: str, key_prefix: str) -> None:
    proc = _serve(command, redis_url, key_prefix, "--host", "no-such-host.invalid", "--port", "18999")
    assert _bind_failed(proc)["errno"] == "EAI"


@pytest.mark.parametrize("port", ["70000", "0", "1_8181", "１２３"])
def test_a_port_out_of_range_is_refused_at_once(port: str, redis_url: str, key_prefix: str) -> None:
    """Before: 70000 bound port 4464 (70000 mod 65536) while the log named 70000; 0 was ignored."""
    for command in COMMANDS:
        proc = _serve(command, redis_url, key_prefix, "--port", port)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert "--port" in proc.stderr and "app.ready" not in proc.stderr
