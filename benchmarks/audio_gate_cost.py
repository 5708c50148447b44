"""CPU of the GPT-Live engine's per-frame audio gates, PCM16 against μ-law, on the same bytes.

Every caller frame passes :func:`caller_voiced` and every output chunk :func:`is_silent`. The
PCM16 path (the browser WebSocket) once cost twice μ-law's (a numpy copy, abs and max on top
of the base64 decode); it now slices the samples' high bytes. This prints the CPU time of
``--rounds`` frames + chunks per encoding (best of ``--repeat``) and the ratio; a ratio near
1 (≤ 1.4) is the target. A benchmark, not a unit test: a ratio of two timings is a number to
read on a quiet machine, not an assertion a loaded CI worker should be held to.

    .venv/bin/python -m benchmarks.audio_gate_cost [--rounds 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import base64
import time

from responder.engines.live.audio import caller_voiced, is_silent

FRAME = base64.b64encode(bytes(range(256)) * 4).decode()[:1280]  # 20 ms of PCM16 at 24 kHz
CHUNK = base64.b64encode(bytes(range(256)) * 19).decode()[:6400]  # 100 ms


def cost(encoding: str, rounds: int) -> float:
    """Thread CPU seconds of ``rounds`` frame + chunk classifications."""
    started = time.thread_time()
    for _ in range(rounds):
        caller_voiced(FRAME, encoding)
        is_silent(CHUNK, encoding)
    return time.thread_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    best = {"audio/pcm": float("inf"), "audio/pcmu": float("inf")}
    for _ in range(args.repeat):
        for encoding in best:
            best[encoding] = min(best[encoding], cost(encoding, args.rounds))
    for encoding, seconds in best.items():
        print(f"{encoding:11} {seconds / args.rounds * 1e6:7.2f} µs per frame + chunk")
    print(f"ratio pcm / pcmu: {best['audio/pcm'] / best['audio/pcmu']:.2f} (target ≤ 1.4)")


if __name__ == "__main__":
    main()
