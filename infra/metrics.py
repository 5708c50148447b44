"""Every Prometheus metric of the service, in one registry, served at ``/metrics``.

The objects live in :data:`REGISTRY` (not the process-wide default one), so that tests can
read values with ``REGISTRY.get_sample_value`` and an embedding application can mount them
where it likes. This module is shared infrastructure: it knows no call, decision or engine
(a decision's numbers are observed by :func:`supervisor.observe.observe_decision`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0)
_TOOL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

ACTIVE_CALLS = Gauge("responder_active_calls", "Calls in progress", ["transport"], registry=REGISTRY)
CALLS = Counter(
    "responder_calls", "Calls ended, by transport and outcome", ["transport", "outcome"], registry=REGISTRY
)
CALLS_REFUSED = Counter(
    "responder_calls_refused", "New calls refused, by transport and reason (capacity, draining, "
    "rate_limited, origin)",
    ["transport", "reason"], registry=REGISTRY,
)  # fmt: skip
SUPERVISOR_LATENCY = Histogram(
    "responder_supervisor_latency_seconds", "Supervisor decision latency", ["outcome"],
    buckets=_LATENCY_BUCKETS, registry=REGISTRY,
)  # fmt: skip
TOOL_LATENCY = Histogram(
    "responder_supervisor_tool_latency_seconds", "Supervisor tool call latency", ["tool"],
    buckets=_TOOL_BUCKETS, registry=REGISTRY,
)  # fmt: skip
RESPONSE_LATENCY = Histogram(
    "responder_response_latency_seconds", "Caller stopped speaking to first assistant audio sent",
    buckets=_LATENCY_BUCKETS, registry=REGISTRY,
)  # fmt: skip
HOLD_LINES = Counter("responder_hold_lines", "Hold lines requested", registry=REGISTRY)
FALLBACKS = Counter("responder_fallbacks", "Fallback answers, by outcome", ["outcome"], registry=REGISTRY)
REALTIME_ERRORS = Counter(
    "responder_realtime_errors", "Error events from the Realtime server", ["code"], registry=REGISTRY
)
DTMF_REFUSED = Counter(
    "responder_dtmf_refused", "Key presses not recorded: over the call's key rate, or too many before "
    "its session came up (reason: rate, early_overflow)", ["reason"], registry=REGISTRY,
)  # fmt: skip
CALL_ITEMS_REFUSED = Counter(
    "responder_call_items_refused", "History items refused at the per-call item limit, by kind", ["kind"],
    registry=REGISTRY,
)  # fmt: skip
REDIS_ERRORS = Counter("responder_redis_errors", "Failed Redis operations", ["operation"], registry=REGISTRY)
HISTORY_BUFFERED = Gauge(
    "responder_history_buffered_writes", "History writes waiting for Redis to come back", registry=REGISTRY
)  # set by callrecord.history_buffer through a callback: the supervisor imports no responder code
REALTIME_RECONNECTS = Counter(
    "responder_realtime_reconnects",
    "New Realtime sessions after a dropped socket, by outcome (reconnected, attempt_failed, failed)",
    ["outcome"], registry=REGISTRY,
)  # fmt: skip
TOKENS = Counter(
    "responder_tokens", "Model tokens used (supervisor and Realtime)", ["model", "kind"], registry=REGISTRY
)
UNAUTHENTICATED_SOCKETS = Gauge(
    "responder_unauthenticated_sockets",
    "WebSockets open that have not shown their credential yet (a Twilio media stream before its start)",
    ["transport"], registry=REGISTRY,
)  # fmt: skip
SOCKETS_REFUSED = Counter(
    "responder_sockets_refused",
    "WebSockets refused or closed before authenticating, by reason (origin, client_cap, total_cap, "
    "no_start, bad_token, token_used, unavailable)",
    ["transport", "reason"], registry=REGISTRY,
)  # fmt: skip


def observe_realtime_usage(model: str, usage: Mapping[str, Any] | None) -> None:
    """Tokens of one Realtime response (``response.done`` → ``response.usage``)."""
    if not usage:
        return
    for kind in ("input", "output"):
        count = usage.get(f"{kind}_tokens")
        if isinstance(count, int) and count > 0:
            TOKENS.labels(model=model or "unknown", kind=kind).inc(count)


def call_ended(transport: str, outcome: str) -> None:
    ACTIVE_CALLS.labels(transport=transport).dec()
    CALLS.labels(transport=transport, outcome=outcome).inc()


# The error codes the speech servers (Realtime, GPT-Live) document or are seen to send; any
# other code is counted as "other", so that a server sending new codes each time cannot grow
# the registry (the code itself is in the log event of the error).
SERVER_ERROR_CODES: Final = frozenset({
    "conversation_already_has_active_response", "response_cancel_not_active",
    "input_audio_buffer_commit_empty", "invalid_value", "invalid_type", "invalid_json",
    "unknown_parameter", "missing_required_parameter", "invalid_api_key", "insufficient_quota",
    "rate_limit_exceeded", "server_error", "session_expired", "session_not_active",
    "session_not_started", "session_already_started", "session_closing", "item_truncate_invalid_item_id",
    "decimal_below_min_value", "decimal_above_max_value", "string_above_max_length", "model_not_found",
})  # fmt: skip


def realtime_error(code: object) -> None:
    known = isinstance(code, str) and code in SERVER_ERROR_CODES
    label = "unknown" if not code else str(code) if known else "other"
    REALTIME_ERRORS.labels(code=label).inc()


async def metrics_handler(request: web.Request) -> web.Response:
    # the exposition format's full content type, version parameter included, as scrapers expect
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})
