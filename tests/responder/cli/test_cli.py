"""The README's run command, end to end, in a subprocess: `responder call --scenario returns`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.service import FAST_SPEED


def test_simulated_call_prints_grounded_decision(tmp_path: Path, redis_url: str, key_prefix: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "RESPONDER_", "TWILIO_"))}
    env.update(
        REDIS_URL=redis_url,
        RESPONDER_REDIS_PREFIX=key_prefix,
        RESPONDER_LOG_FORMAT="json",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "responder", "call", "--scenario", "returns", "--speed", str(FAST_SPEED),
         "--json"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    first_log = json.loads(proc.stderr.splitlines()[0])
    assert first_log["event"] == "app.no_api_key"  # keyless mode is announced first
    result = json.loads(proc.stdout)
    [decision] = result["decisions"]
    assert decision["outcome"] == "ok"
    assert {"id": "returns", "version": 3} in [
        {"id": p["id"], "version": p["version"]} for p in decision["policies"]
    ]
    texts = [i["text"] for i in result["items"] if i["kind"] == "message" and i["role"] == "assistant"]
    assert texts[-1] == decision["text"] and "60 days" in texts[-1]
    assert "app.ready" in proc.stderr and "/twilio/voice" in proc.stderr
