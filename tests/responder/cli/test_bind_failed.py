"""Both serving commands on a port that is already taken: one ``app.bind_failed`` log line and
exit status 1, no traceback, and what startup opened is closed again (the process exits)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.support.paths import REPO
from tests.support.supervisor import SUPERVISOR_TOKEN

COMMANDS = {"voice": ["serve"], "supervisor": ["supervisor", "serve"]}


@pytest.mark.parametrize("command", COMMANDS)
def test_a_taken_port_is_one_log_line_and_exit_status_1(command: str, redis_url: str, key_prefix: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "RESPONDER_", "TWILIO_"))}
    env.update(
        REDIS_URL=redis_url, RESPONDER_REDIS_PREFIX=key_prefix, RESPONDER_LOG_FORMAT="json",
        RESPONDER_SUPERVISOR_TOKEN=SUPERVISOR_TOKEN,
    )  # fmt: skip
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "responder", *COMMANDS[command], "--port", str(port)],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=90,
        )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    [failed] = [e for e in events if e["event"] == "app.bind_failed"]
    assert failed["port"] == port and failed["errno"] == "EADDRINUSE" and failed["level"] == "error"
