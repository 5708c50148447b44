"""What anyone can repeat at will is logged within a budget: refused browser calls and media
streams with a made-up token. Before, each was one warning line (15,871 lines in 3 s from one
client); now the first ones are logged, then about one a second with how many were left out,
and every refusal is still counted in a metric."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from infra.logs import LogBudget
from infra.metrics import REGISTRY
from infra.settings import Settings
from responder.transports import webrtc, websocket
from responder.transports.twilio import transport as twilio_transport
from tests.support.service import RunningService
from tests.support.twilio import closed_with, media_url, start_frame, webhook_params

BURST = 5
TRIES = 40


def _refused_total(transport: str, reason: str) -> float:
    labels = {"transport": transport, "reason": reason}
    return REGISTRY.get_sample_value("responder_calls_refused_total", labels) or 0.0


async def test_refused_browser_calls_log_a_few_lines_and_count_all(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    budget = LogBudget(burst=BURST, per_s=0.001)
    monkeypatch.setattr(webrtc, "REFUSALS_LOGGED", budget)
    monkeypatch.setattr(websocket, "REFUSALS_LOGGED", budget)
    svc: RunningService = await start_service(make_settings(call_rate_burst=1, call_rate_per_minute=1))
    url = svc.url.replace("http", "ws", 1) + "/calls/ws"
    before = _refused_total("websocket", "rate_limited")
    with capture_logs() as logs:
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(url) as ws:  # the one call the burst allows
                await ws.send_json({"type": "stop"})
            for _ in range(TRIES):
                with pytest.raises(aiohttp.WSServerHandshakeError):
                    await http.ws_connect(url)
    lines = [e for e in logs if e["event"] == "websocket.call_refused"]
    assert len(lines) == BURST and all(e["reason"] == "rate_limited" for e in lines)
    assert _refused_total("websocket", "rate_limited") - before == TRIES


async def test_streams_with_a_made_up_token_log_a_few_lines(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    budget = LogBudget(burst=BURST, per_s=0.001)
    monkeypatch.setattr(twilio_transport, "_BAD_TOKENS_LOGGED", budget)
    svc: RunningService = await start_service(make_settings())
    forged = {"token": "0" * 64, "expires": "9999999999"}
    with capture_logs() as logs:
        async with aiohttp.ClientSession() as http:
            for _ in range(12):
                async with http.ws_connect(media_url(svc)) as ws:
                    await ws.send_str(start_frame(webhook_params()["CallSid"], forged))
                    assert await closed_with(ws) == 1008
    lines = [e for e in logs if e["event"] == "twilio.stream_rejected"]
    assert len(lines) == BURST and all(e["reason"] == "bad stream token" for e in lines)
    assert budget.suppressed == 12 - BURST  # counted for the next line that goes out
