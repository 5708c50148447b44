"""A decision's numbers in the shared metrics registry: latency, tool latencies and tokens.

Called by whoever receives the :class:`~callrecord.decisions.Decision` (the call controller,
the supervisor service), once per decision.
"""

from __future__ import annotations

from callrecord.decisions import Decision
from infra.metrics import SUPERVISOR_LATENCY, TOKENS, TOOL_LATENCY


def observe_decision(decision: Decision) -> None:
    """Supervisor latency, tool latencies and tokens of one decision."""
    SUPERVISOR_LATENCY.labels(outcome=decision.outcome).observe(decision.latency_ms / 1000)
    for tool in decision.tool_calls:
        TOOL_LATENCY.labels(tool=tool.name).observe(tool.ms / 1000)
    model = decision.model or "unknown"
    if decision.usage.input_tokens:
        TOKENS.labels(model=model, kind="input").inc(decision.usage.input_tokens)
    if decision.usage.output_tokens:
        TOKENS.labels(model=model, kind="output").inc(decision.usage.output_tokens)
