"""Fixtures of the property tests: the real service on its own event loop
(:mod:`tests.support.loop_service`) and the stdlib error records that must stay empty."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.loop_service import ErrorRecords, LoopService, fuzz_settings


@pytest.fixture
def error_records() -> Iterator[ErrorRecords]:
    handler = ErrorRecords()
    # what earlier tests on this worker left for the garbage collector (an SDK client closed on
    # a loop that is gone) reports its errors now, not as this test's
    gc.collect()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


@pytest.fixture
def loop_service(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[Any]:
    """``loop_service(**settings)`` → a running :class:`LoopService` (closed at teardown)."""
    started: list[LoopService] = []

    def start(**overrides: Any) -> LoopService:
        service = LoopService(fuzz_settings(redis_url, key_prefix, tmp_path / "redis", **overrides))
        started.append(service)
        return service

    yield start
    for service in started:
        service.close()
