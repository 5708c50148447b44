"""Summarise py-spy collapsed stacks (``--format raw``): top frames by own and inclusive share,
and each sample's part of the service (the first part whose marker is in its stack).

.venv/bin/python -m benchmarks.load.collapse benchmarks/profiles/FILE.txt [--top 25]

The loadgen's ``--profile`` records with ``--gil``: a sample is taken only from a thread that
holds the GIL, so the shares are of the service's Python CPU, and a loop waiting in epoll is
not counted as work.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Final

# (part, markers): a sample belongs to the first part one of whose markers is in its stack
PARTS: Final = (
    ("supervisor decisions", ("supervisor/",)),
    ("history in Redis", ("callrecord/", "redis/")),
    ("log lines", ("structlog/", "infra/log_writer", "infra/logs", "infra/redact")),
    ("relay model→caller", ("take_audio", "relay_now")),
    ("relay caller→model", ("caller_audio_now",)),
    ("socket reads, other frames", ("data_received",)),
)


def summarise(path: Path, top: int = 25) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    parts: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        parts[next((part for part, marks in PARTS if any(m in stack for m in marks)), "other")] += n
        for frame in set(frames):
            inclusive[frame] += n
    if not total:
        return "no samples"
    lines = [f"{total} samples", "", "parts of the service:"]
    lines += [f"  {n / total:6.1%}  {part}" for part, n in parts.most_common()]
    lines += ["", "own time:"]
    lines += [f"  {n / total:6.1%}  {frame[:140]}" for frame, n in own.most_common(top)]
    lines += ["", "inclusive (frames below the event loop):"]
    skip = ("<module>", "run_app", "run_forever", "run_until_complete", "_run_once", "_run_code", "main (")
    shown = [(f, n) for f, n in inclusive.most_common() if not any(s in f for s in skip)]
    lines += [f"  {n / total:6.1%}  {frame[:140]}" for frame, n in shown[:top]]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("path", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(summarise(args.path, args.top))
