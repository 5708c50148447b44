"""Call traces: what was said and why, from Redis or from JSON logs alone."""

from responder.trace.from_log import trace_from_log
from responder.trace.from_redis import recent_traces, trace_from_redis
from responder.trace.model import Trace, TraceDecision, TraceEntry, TraceSummary, valid_call_id
from responder.trace.render import render_text

__all__ = [
    "Trace",
    "TraceDecision",
    "TraceEntry",
    "TraceSummary",
    "recent_traces",
    "render_text",
    "trace_from_log",
    "trace_from_redis",
    "valid_call_id",
]
