"""How long the ``openai`` SDK's first use of each runtime path blocks the event loop.

    .venv/bin/python -m benchmarks.load.sdk_first_use [--warm]

In a fresh process (nothing built yet), against the simulator (its own process, probe
mode): each path the service takes at run time is used twice while a ticker task measures the
longest gap between its 1 ms ticks (the event loop's longest stall). ``--warm`` first runs
what the service runs at startup: :func:`responder.server.warmup.warm_up_sdk`,
:func:`responder.server.warmup.warm_up_text_model`.
Prints one line per path: first and second use, in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from benchmarks.load.procs import probe_simulator
from responder.engines.realtime.connection import make_client, open_realtime
from simulator.sip import incoming_call_event, new_webhook_secret, sign
from supervisor.model import Message, OpenAIModelClient


class StallMeter:
    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.worst = max(self.worst, now - last)
            last = now

    async def measure(self, op: Callable[[], Awaitable[Any]]) -> float:
        self.worst = 0.0
        self._task = asyncio.create_task(self._tick())
        await asyncio.sleep(0.005)
        try:
            await op()
            await asyncio.sleep(0.005)
        finally:
            self._task.cancel()
        return self.worst * 1000


async def main(warm: bool) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    async with probe_simulator() as sim:  # its own process: its work is not our stall
        await _measure(sim.url, warm)


async def _measure(url: str, warm: bool) -> None:
    client = make_client("sk-sim", url + "/v1", None)
    model = OpenAIModelClient.create(model="gpt-4.1", api_key="sk-sim", base_url=url + "/v1")
    secret = new_webhook_secret()
    if warm:
        from responder.server.warmup import warm_up_sdk, warm_up_text_model

        t0 = time.perf_counter()
        parts = {**warm_up_sdk(client), "text_model": await warm_up_text_model("responses")}
        took = (time.perf_counter() - t0) * 1000
        print(f"startup warm-up: {took:.1f} ms in all, before serving; warm_up_sdk parts (ms): {parts}")

    async def realtime() -> None:
        async with open_realtime(client, "CAfirstuse", model="gpt-realtime") as rt:
            await rt.send({"type": "session.update", "session": {"type": "realtime"}})
            async for event in rt.events():
                if event.get("type") == "session.updated":
                    break

    async def unwrap() -> None:
        body = json.dumps(incoming_call_event("rtc_" + "0" * 20, []))
        headers = sign(body, secret, webhook_id="msg_" + str(time.time_ns()))
        client.webhooks.unwrap(body, headers, secret=secret)

    async def call_control() -> None:
        try:
            await client.realtime.calls.hangup("rtc_unknown")
        except Exception:  # the simulator answers 404: the error path is what a call takes too
            pass

    async def responses() -> None:
        await model.complete("Answer briefly.", [Message("user", "Hello?")], [])

    meter = StallMeter()
    for name, op in (
        ("realtime.connect + session.update", realtime),
        ("webhooks.unwrap (SIP incoming call)", unwrap),
        ("realtime.calls.hangup (REST, error reply)", call_control),
        ("responses.create (supervisor model)", responses),
    ):
        first = await meter.measure(op)
        second = await meter.measure(op)
        print(f"{name:<44} first use: {first:6.1f} ms   second: {second:6.1f} ms  (longest loop stall)")
    await model.aclose()
    await client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--warm", action="store_true")
    asyncio.run(main(parser.parse_args().warm))
