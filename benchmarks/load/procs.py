"""The load test's processes: the simulator and the service, each its own OS process, and
what ``/proc`` says about them (CPU seconds, resident memory)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int | str = "self") -> float:
    """utime + stime of a process (not its children), in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / TICKS


def cpu_split(pid: int | str = "self") -> tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def rss_mib(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    url: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)  # what a client of this process needs set

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


def start(
    name: str, args: list[str], env: dict[str, str], url: str, log_dir: Path, python: Sequence[str] = (),
    module: str = "responder",
) -> Proc:  # fmt: skip
    """``python -m MODULE ARGS`` with ``env`` added; ``python``: interpreter options first
    (``-m cProfile -o FILE`` profiles the process until it exits)."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as out:
        popen = subprocess.Popen(
            [sys.executable, *python, "-m", module, *args],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],
        )
    return Proc(name, popen, url, log_path)


async def wait_ready(proc: Proc, path: str, timeout_s: float = 30.0) -> None:
    """Poll ``path`` until it answers 200; a process that exits meanwhile is an error."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                tail = proc.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{tail}")
            try:
                async with http.get(proc.url + path) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{proc.name} not ready at {proc.url}{path} within {timeout_s:.0f}s")


@asynccontextmanager
async def probe_simulator() -> AsyncIterator[Proc]:
    """The simulator in probe mode as its own process (its work is not the measured process's),
    ready to answer; stopped on exit."""
    port = free_port()
    with tempfile.TemporaryDirectory() as logs:
        url = f"http://127.0.0.1:{port}"
        sim = start("simulator", ["simulate", "--port", str(port), "--probe"], {}, url, Path(logs))
        try:
            await wait_ready(sim, "/_probe")
            yield sim
        finally:
            sim.stop()
