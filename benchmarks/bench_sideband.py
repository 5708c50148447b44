"""SIP and WebRTC call setup through the real service, against the simulator (a test double).

Measures what the service adds on the control path of a sideband call:

* SIP: signed ``realtime.call.incoming`` webhook → verify (``client.webhooks.unwrap``) →
  Redis claim → ``/accept`` at the simulator → 200 to the sender;
* WebRTC: SDP offer → admission → ``/v1/realtime/calls`` (multipart) at the simulator →
  answer SDP to the browser;

then lets every call run to its end on its sideband socket and counts grounded decisions.
Usage: ``.venv/bin/python benchmarks/bench_sideband.py --calls 20``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import structlog
from aiohttp.test_utils import TestServer, unused_port

from callrecord.history import CallHistory
from infra.settings import Settings
from responder.runtime.services import SERVICES
from responder.server.app import create_app
from simulator.sip import send_incoming_call

SECRET = "whsec_" + "YmVuY2gtc2lwLXNlY3JldC1mb3Itc2lnbmluZy0wMA=="
OFFER = "\r\n".join(
    ["v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "m=audio 9 UDP/TLS/RTP/SAVPF 111",
     "c=IN IP4 0.0.0.0", "a=mid:0", "a=rtpmap:111 opus/48000/2", ""]
)  # fmt: skip


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(name: str, values: list[float]) -> str:
    return (
        f"{name}: n={len(values)} p50 {statistics.median(values):.1f} ms, "
        f"p95 {pct(values, 0.95):.1f} ms, max {max(values):.1f} ms"
    )


async def sip_setup(url: str, state: object) -> tuple[str, float]:
    t0 = time.perf_counter()
    delivery = await send_incoming_call(url + "/openai/sip", SECRET, state=state)  # type: ignore[arg-type]
    assert delivery.statuses == [200], delivery.bodies
    return delivery.call_id, (time.perf_counter() - t0) * 1000


async def webrtc_setup(http: aiohttp.ClientSession, url: str) -> tuple[str, float]:
    t0 = time.perf_counter()
    headers = {"Content-Type": "application/sdp"}
    async with http.post(url + "/calls/webrtc", data=OFFER, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        call_id = resp.headers["X-Call-Id"]
        await resp.read()
    return call_id, (time.perf_counter() - t0) * 1000


async def wait_ended(history: CallHistory, call_ids: list[str], timeout_s: float = 120.0) -> None:
    async with asyncio.timeout(timeout_s):
        for call_id in call_ids:
            while (await history.get_meta(call_id)).get("status") not in ("ended", "failed"):  # noqa: ASYNC110
                await asyncio.sleep(0.1)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20, help="calls of each kind")
    parser.add_argument("--speed", type=float, default=4.0)
    parser.add_argument("--redis-url", default=None)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    port = unused_port()
    settings = Settings(
        redis_url=args.redis_url,
        redis_data_dir=Path(tempfile.mkdtemp()) / "redis",
        redis_prefix="benchsideband",
        openai_webhook_secret=SECRET,
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        simulator_speed=args.speed,
        max_concurrent_calls=4 * args.calls,
        call_rate_burst=4 * args.calls,
        log_level="ERROR",
    )
    server = TestServer(create_app(settings), host="127.0.0.1", port=port)
    await server.start_server()
    services = server.app[SERVICES]
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        sip = [await sip_setup(url, services.simulator.state) for _ in range(args.calls)]
        rtc = [await webrtc_setup(http, url) for _ in range(args.calls)]
    print(summary("SIP webhook → accepted (verify + claim + accept)", [ms for _, ms in sip]))
    print(summary("WebRTC offer → answer SDP (admission + create)", [ms for _, ms in rtc]))
    call_ids = [c for c, _ in sip + rtc]
    t0 = time.perf_counter()
    await wait_ended(services.history, call_ids)
    grounded = 0
    for call_id in call_ids:
        decisions = await services.history.get_decisions(call_id)
        grounded += any(d.outcome == "ok" and "returns@3" in d.policy_labels() for d in decisions)
    print(
        f"{len(call_ids)} sideband calls ({args.calls} SIP + {args.calls} WebRTC) ran to their end "
        f"{time.perf_counter() - t0:.1f} s after the last setup; "
        f"grounded decisions {grounded}/{len(call_ids)}; "
        f"capacity slots still held: {services.admission.active_total}"
    )
    await server.close()


if __name__ == "__main__":
    asyncio.run(main())
