"""CPU of one supervisor model round trip in the calling process, by SDK transport and reply reading.

    .venv/bin/python -m benchmarks.supervisor_http_cost [--posts 300] [--items 20]

The simulator's text model runs as its own process (its work is not measured). Each variant
posts the same ``/responses`` body ``--posts`` times through the ``openai`` SDK and reports
user and system CPU of this process per post:

* ``httpx2 + Response``: the SDK's default transport, the reply built into its ``Response``
  model (what :class:`supervisor.model.OpenAIModelClient` did before);
* ``httpx2 + JSON``: the same transport, the reply's JSON read by ``supervisor.model_reply``;
* ``aiohttp + Response`` and ``aiohttp + JSON``: the SDK's ``DefaultAioHttpClient``
  (the last is what the client does now).

Variants take turns, three rounds each, so that drift on a shared machine hits them alike.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
from typing import Any

import httpx2
from openai import AsyncOpenAI, DefaultAioHttpClient
from openai.types.responses import Response

from benchmarks.load.procs import probe_simulator
from supervisor.model import Message, OpenAIModelClient
from supervisor.model_reply import decode, responses_turn


async def _post(client: AsyncOpenAI, body: dict[str, Any], json_read: bool) -> None:
    if json_read:
        reply = await client.post("/responses", body=body, cast_to=httpx2.Response)
        responses_turn(decode(reply.content))
    else:
        await client.post("/responses", body=body, cast_to=Response)


async def main(posts: int, items: int, rounds: int = 3) -> None:
    async with probe_simulator() as sim:
        base = sim.url + "/v1"
        transports = {
            "httpx2": AsyncOpenAI(api_key="sk-bench", base_url=base, max_retries=0),
            "aiohttp": AsyncOpenAI(
                api_key="sk-bench", base_url=base, max_retries=0, http_client=DefaultAioHttpClient()
            ),
        }
        messages = [
            Message("user" if i % 2 == 0 else "assistant", f"Turn {i}: " + "words said on the phone " * 3)
            for i in range(items)
        ]
        body = OpenAIModelClient(transports["httpx2"], "gpt-4.1").request_body(
            "You answer from policy. " * 40, messages, []
        )
        results: dict[str, list[tuple[float, float]]] = {}
        for _ in range(rounds):
            for name, client in transports.items():
                for json_read in (False, True):
                    for _ in range(20):  # connections, caches
                        await _post(client, body, json_read)
                    before = resource.getrusage(resource.RUSAGE_SELF)
                    for _ in range(posts):
                        await _post(client, body, json_read)
                    after = resource.getrusage(resource.RUSAGE_SELF)
                    label = f"{name} + {'JSON' if json_read else 'Response'}"
                    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
                    results.setdefault(label, []).append((user / posts, system / posts))
        for client in transports.values():
            await client.close()
    print(f"{posts} posts x {rounds} rounds, {items} history items, body {len(str(body))} chars")
    print(f"{'variant':22} {'user µs/post (median)':>22} {'system µs/post':>15}")
    for label, runs in results.items():
        users = sorted(u for u, _ in runs)
        systems = sorted(s for _, s in runs)
        print(f"{label:22} {users[len(users) // 2] * 1e6:22.0f} {systems[len(systems) // 2] * 1e6:15.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=300)
    parser.add_argument("--items", type=int, default=20)
    args = parser.parse_args()
    started = time.perf_counter()
    asyncio.run(main(args.posts, args.items))
    print(f"({time.perf_counter() - started:.0f} s)")
