"""Optional OpenTelemetry spans: one per supervisor round and per tool call, when turned on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from infra.settings import Settings

otel_sdk = pytest.importorskip("opentelemetry.sdk.trace", reason="the [otel] extra is not installed")


def _exporter() -> Any:
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = trace.get_tracer_provider()
    if not isinstance(provider, otel_sdk.TracerProvider):  # set once per process
        provider = otel_sdk.TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.mark.parametrize("enabled", [True, False])
async def test_supervisor_spans_follow_the_setting(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings], enabled: bool
) -> None:
    exporter = _exporter()
    svc = await start_service(make_settings(simulator_scenario="returns", otel=enabled))
    await svc.services.history.start_call("CAotel", transport="test")
    decision = await svc.services.decide("CAotel", "Can I return a tent I already used on a camping trip?")
    assert decision.outcome == "ok" and decision.tool_calls
    finished = exporter.get_finished_spans()
    spans = [s for s in finished if s.attributes.get("decision_id") == decision.decision_id]
    if not enabled:
        assert spans == []
        return
    rounds = [s for s in spans if s.name == "supervisor.round"]
    tools = [s for s in spans if s.name == "supervisor.tool"]
    assert [s.attributes["round"] for s in rounds] == list(range(1, decision.rounds + 1))
    assert sorted(s.attributes["tool"] for s in tools) == sorted(t.name for t in decision.tool_calls)
