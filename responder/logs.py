"""structlog configuration: JSON in production, console in development."""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

from responder.redact import redact_pii


def configure_logging(
    fmt: Literal["json", "console"] = "console", level: str = "INFO", *, redact: bool = True
) -> None:
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            *([redact_pii] if redact else []),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
