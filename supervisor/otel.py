"""Optional OpenTelemetry spans for supervisor decisions, rounds and tool calls.

Off by default (``RESPONDER_OTEL=true`` turns it on). ``opentelemetry`` is imported only
when spans are on, so the package is an optional extra (``pip install '.[otel]'``); the
application configures the exporter (``opentelemetry-instrument`` or its own SDK setup).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager
from typing import Any

Spans = Callable[..., ContextManager[Any]]


def _no_span(name: str, **attributes: Any) -> ContextManager[None]:
    return contextlib.nullcontext()


def span_factory(enabled: bool) -> Spans:
    """``spans(name, **attributes)`` → a context manager; a no-op unless ``enabled``."""
    if not enabled:
        return _no_span
    from opentelemetry import trace  # optional dependency: imported only when asked for

    tracer = trace.get_tracer("supervisor")

    def span(name: str, **attributes: Any) -> ContextManager[Any]:
        clean = {k: v for k, v in attributes.items() if isinstance(v, str | int | float | bool)}
        return tracer.start_as_current_span(name, attributes=clean)

    return span
