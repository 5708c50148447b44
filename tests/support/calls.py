"""Simulated calls against the real service (:mod:`tests.support.service`), and what the call
tests read back from a call's record: its status, items and conversation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from callrecord.history import HistoryItem
from infra.settings import Settings
from simulator.caller import CallerReport, place_call
from simulator.scenario import Scenario
from tests.support.service import AUTH_TOKEN, FAST_SPEED, RunningService
from tests.support.waits import wait_until

# Wall-clock silence after which the simulated caller speaks again: above the simulated
# supervisor's latency, well below the scenario default so that the suite stays fast.
QUIET_MS = 900

# The form of Twilio's incoming-call webhook (``/twilio/voice``).
VOICE_WEBHOOK_PARAMS = {
    "CallSid": "CA" + "1" * 32,
    "AccountSid": "AC" + "2" * 32,
    "From": "+15555550123",
    "To": "+15555550100",
    "CallStatus": "ringing",
    "Direction": "inbound",
}


async def run_call(
    start_service: Callable[..., Any],
    settings: Settings,
    scenario: Scenario,
    *,
    speed: float = FAST_SPEED,
    **caller_kwargs: Any,
) -> tuple[RunningService, CallerReport, list[HistoryItem]]:
    """Start the service, place one simulated phone call (simulator and caller at ``speed``; the
    scenario's default quiet period shortened to :data:`QUIET_MS`) and return the ended call's
    items."""
    svc: RunningService = await start_service(settings.model_copy(update={"simulator_speed": speed}))
    if scenario.quiet_ms == Scenario.model_fields["quiet_ms"].default:
        scenario = scenario.model_copy(update={"quiet_ms": QUIET_MS})
    report = await place_call(svc.url, scenario, auth_token=AUTH_TOKEN, speed=svc.speed, **caller_kwargs)
    return svc, report, await ended_call_items(svc, report.call_sid)


async def wait_for_status(
    svc: RunningService, call_id: str, statuses: set[str], timeout_s: float = 30.0
) -> dict[str, str]:
    """Poll the call's meta in Redis until its status is one of ``statuses``."""

    async def meta() -> dict[str, str] | None:
        current = await svc.services.history.get_meta(call_id)
        return current if current.get("status") in statuses else None

    found: dict[str, str] = await wait_until(meta, timeout_s, 0.05, what=f"{call_id} {sorted(statuses)}")
    return found


async def ended_call_items(svc: RunningService, call_id: str, timeout_s: float = 30.0) -> list[HistoryItem]:
    """The call's items once the service recorded its end (it does so asynchronously)."""
    await wait_for_status(svc, call_id, {"ended", "failed"}, timeout_s)
    return await svc.services.history.get_items(call_id)


def conversation(items: list[HistoryItem]) -> list[tuple[str, str]]:
    """The spoken messages, in order, as ``(role, text)``."""
    return [(i.role or "", i.text or "") for i in items if i.kind == "message"]


def assert_protocol_clean(svc: RunningService) -> None:
    """Every client event validated, and the server refused nothing (no overlapping
    response.create, no truncation past the audio, no unknown items)."""
    state = svc.services.simulator.state
    assert state.invalid_events == [], state.invalid_events
    assert state.errors_sent == [], state.errors_sent
    types = [e["type"] for e in state.client_events]
    assert "session.update" in types and "input_audio_buffer.append" in types
