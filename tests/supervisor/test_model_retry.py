"""Text-model 429/5xx from the simulator: retried with backoff inside the supervisor deadline,
through the real openai SDK (its own retries off)."""

from __future__ import annotations

import asyncio
import time

import pytest
import structlog
from structlog.testing import capture_logs

from callrecord.history import CallHistory
from supervisor.agent import FALLBACK_TEXT, build_supervisor
from supervisor.model import Message, ModelError, OpenAIModelClient
from tests.support.supervisor import TENT_QUESTION, StartTextModel


@pytest.mark.parametrize("api", ["responses", "chat"])
async def test_429_and_5xx_are_retried_and_the_answer_stays_grounded(
    api: str, start_text_model: StartTextModel, history: CallHistory
) -> None:
    sim = await start_text_model()
    sim.state.text_failures = [429, 500, 503]
    sim.state.text_failure_retry_after = 0.2
    supervisor = build_supervisor(history, api_key="sk-test", model="m", base_url=sim.base_url, api=api)  # type: ignore[arg-type]
    try:
        with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
            decision = await supervisor.decide("call-r1", TENT_QUESTION)
    finally:
        await supervisor.aclose()
    assert sim.state.text_failures_sent == [429, 500, 503]
    assert decision.outcome == "ok" and decision.error is None
    assert "returns@3" in decision.policy_labels() and "60 days" in decision.text
    retries = [e for e in logs if e["event"] == "supervisor.model_retry"]
    assert [(e["status"], e["attempt"]) for e in retries] == [(429, 1), (500, 2), (503, 3)]
    assert all(e["delay_ms"] >= 200 for e in retries)  # Retry-After is a floor
    assert all(e["call_id"] == "call-r1" for e in retries)  # bound for every line of the run
    assert decision.latency_ms >= 600
    [stored] = await history.get_decisions("call-r1")
    assert stored.outcome == "ok"


async def test_always_failing_model_falls_back_within_the_deadline(
    start_text_model: StartTextModel, history: CallHistory
) -> None:
    sim = await start_text_model()
    sim.state.text_failures = [503] * 100
    supervisor = build_supervisor(
        history, api_key="sk-test", model="m", base_url=sim.base_url, deadline_s=1.5, max_retries=50
    )
    started = time.monotonic()
    try:
        with capture_logs() as logs:
            decision = await supervisor.decide("call-r2", TENT_QUESTION)
    finally:
        await supervisor.aclose()
    assert time.monotonic() - started < 1.5
    assert decision.outcome == "error" and decision.text == FALLBACK_TEXT
    assert decision.error is not None and "HTTP 503" in decision.error
    # retried while the deadline allowed: waits of 0.1-0.2 s and 0.2-0.4 s always fit in 1.5 s
    assert len(sim.state.text_failures_sent) >= 3
    [stored] = await history.get_decisions("call-r2")
    assert stored.decision_id == decision.decision_id and stored.outcome == "error"
    assert [e["outcome"] for e in logs if e["event"] == "supervisor.decision"] == ["error"]


async def test_retry_after_past_the_deadline_falls_back_at_once(
    start_text_model: StartTextModel, history: CallHistory
) -> None:
    sim = await start_text_model()
    sim.state.text_failures, sim.state.text_failure_retry_after = [429], 30.0
    supervisor = build_supervisor(
        history, api_key="sk-test", model="m", base_url=sim.base_url, deadline_s=5.0
    )
    try:
        decision = await supervisor.decide("call-r3", TENT_QUESTION)
    finally:
        await supervisor.aclose()
    assert decision.outcome == "error" and "HTTP 429" in str(decision.error)
    assert decision.latency_ms < 1000  # not a 5 s sleep into the deadline
    assert sim.state.text_failures_sent == [429]


async def test_other_4xx_are_not_retried(start_text_model: StartTextModel, history: CallHistory) -> None:
    sim = await start_text_model()
    sim.state.text_failures = [400, 500]
    supervisor = build_supervisor(history, api_key="sk-test", model="m", base_url=sim.base_url)
    try:
        decision = await supervisor.decide("call-r4", TENT_QUESTION)
    finally:
        await supervisor.aclose()
    assert decision.outcome == "error" and "HTTP 400" in str(decision.error)
    assert sim.state.text_failures_sent == [400] and sim.state.text_failures == [500]


async def test_a_long_retry_after_is_not_slept_outside_a_deadline(start_text_model: StartTextModel) -> None:
    """No supervisor deadline around the call (a direct model use): a 429 asking for a minute
    is not waited for (capped by Backoff.max_retry_after_s), the error comes back at once."""
    sim = await start_text_model()
    sim.state.text_failures, sim.state.text_failure_retry_after = [429, 429], 60.0
    client = OpenAIModelClient.create(api_key="sk-test", model="m", base_url=sim.base_url, max_retries=3)
    started = time.monotonic()
    try:
        async with asyncio.timeout(20):
            with pytest.raises(ModelError, match="HTTP 429"):
                await client.complete("instructions", [Message("user", TENT_QUESTION)], [])
    finally:
        await client.aclose()
    assert time.monotonic() - started < 2.0
    assert sim.state.text_failures_sent == [429]
