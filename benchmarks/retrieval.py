"""Retrieval quality and speed of the policy search on the labelled caller questions.

    .venv/bin/python benchmarks/retrieval.py [--policies policies/] [--questions FILE] [-v]

Prints recall@1 and recall@3 (the expected policy id among the top 1 / 3 sections returned
by ``PolicyLibrary.search``), every miss with -v, and the search latency per question.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from supervisor.policies import PolicyLibrary  # noqa: E402
from supervisor.policy_format import load_policies  # noqa: E402

QUESTIONS = ROOT / "tests" / "supervisor" / "data" / "retrieval_questions.yaml"


def recall(library: PolicyLibrary, questions: list[dict[str, str]], k: int) -> tuple[float, list[str]]:
    misses = []
    for item in questions:
        ids = [h.id for h in library.search(item["q"], k=k)]
        if item["id"] not in ids:
            misses.append(f"{item['q']!r}: expected {item['id']}, got {ids}")
    return 1 - len(misses) / len(questions), misses


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--policies", type=Path, default=ROOT / "policies")
    parser.add_argument("--questions", type=Path, default=QUESTIONS)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    questions = yaml.safe_load(args.questions.read_text(encoding="utf-8"))
    started = time.perf_counter()
    library = PolicyLibrary(load_policies(args.policies))
    build_ms = (time.perf_counter() - started) * 1000
    r1, _ = recall(library, questions, 1)
    r3, misses = recall(library, questions, 3)
    timings = []
    for item in questions * 10:
        t = time.perf_counter()
        library.search(item["q"], k=3)
        timings.append((time.perf_counter() - t) * 1e6)
    print(f"questions: {len(questions)}  policies: {len(library.documents)}  index build: {build_ms:.1f} ms")
    print(f"recall@1: {r1:.3f}")
    print(f"recall@3: {r3:.3f}")
    print(f"search: p50 {statistics.median(timings):.0f} µs, max {max(timings):.0f} µs")
    if args.verbose:
        for miss in misses:
            print("  miss@3", miss)
    return 0


if __name__ == "__main__":
    sys.exit(main())
