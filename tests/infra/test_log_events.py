"""The log event vocabulary (infra/log_events.py, simulator/log_events.py) against the source.

Reads every module of the product (and of the simulator) for logger calls —
``.debug/.info/.warning/.error/.exception/.critical/.msg`` on any (bound) logger — whose first
argument is a string literal, and checks the names both ways: each logged name is listed,
each listed name is logged, each is ``area.what_happened``.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.log_events import LOG_EVENTS
from responder.trace.from_log import _Builder
from responder.transports.stream import LogNames
from simulator.log_events import SIMULATOR_LOG_EVENTS

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("responder", "supervisor", "callrecord", "infra")
SIMULATOR = ("simulator",)
LOG_METHODS = frozenset({"debug", "info", "warning", "error", "exception", "critical", "msg"})
NAME_RE = re.compile(r"^[a-z_]+(\.[a-z_]+)+$")

# Built, not written: responder/transports/stream.py logs ``self.names.frame_invalid`` …,
# with ``names = LogNames.of(transport)`` in each stream transport.
DYNAMIC_TRANSPORTS = ("twilio", "websocket")
DYNAMIC_PARTS = ("frame_invalid", "frame_failed", "event_ignored", "stream_rejected")
DYNAMIC = frozenset(f"{t}.{p}" for t in DYNAMIC_TRANSPORTS for p in DYNAMIC_PARTS)


def _modules(packages: tuple[str, ...]) -> Iterator[tuple[str, ast.Module]]:
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield str(path.relative_to(ROOT)), ast.parse(path.read_text(encoding="utf-8"))


def _log_calls(packages: tuple[str, ...]) -> Iterator[tuple[str, ast.Call]]:
    """``(file:line, call)`` of every ``<anything>.<log method>(first, …)``."""
    for where, tree in _modules(packages):
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in LOG_METHODS
                and node.args
            ):
                yield f"{where}:{node.lineno}", node


def _logged(packages: tuple[str, ...]) -> dict[str, list[str]]:
    """Event name → where it is logged (string-literal first arguments)."""
    names: dict[str, list[str]] = {}
    for where, call in _log_calls(packages):
        first = call.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            names.setdefault(first.value, []).append(where)
    return names


@pytest.fixture(scope="module")
def product_logged() -> dict[str, list[str]]:
    return _logged(PRODUCT)


def test_every_name_the_product_logs_is_in_the_vocabulary(product_logged: dict[str, list[str]]) -> None:
    unlisted = {name: where for name, where in product_logged.items() if name not in LOG_EVENTS}
    assert not unlisted, f"add these to infra/log_events.py (or fix the call site): {unlisted}"


def test_every_vocabulary_name_is_logged(product_logged: dict[str, list[str]]) -> None:
    dead = LOG_EVENTS - product_logged.keys() - DYNAMIC
    assert not dead, f"listed in infra/log_events.py but logged nowhere: {sorted(dead)}"


def test_simulator_vocabulary_matches_what_it_logs() -> None:
    logged = _logged(SIMULATOR)
    unlisted = {name: where for name, where in logged.items() if name not in SIMULATOR_LOG_EVENTS}
    assert not unlisted, f"add these to simulator/log_events.py: {unlisted}"
    dead = SIMULATOR_LOG_EVENTS - logged.keys()
    assert not dead, f"listed in simulator/log_events.py but logged nowhere: {sorted(dead)}"


def test_names_are_area_dot_what_happened(product_logged: dict[str, list[str]]) -> None:
    names = LOG_EVENTS | SIMULATOR_LOG_EVENTS | product_logged.keys() | _logged(SIMULATOR).keys()
    bad = sorted(name for name in names if not NAME_RE.fullmatch(name))
    assert not bad, f"event names must match {NAME_RE.pattern}: {bad}"


def test_built_names_are_the_listed_ones() -> None:
    """The only non-literal event names are a stream transport's LogNames, and the test's
    explicit list of what they build is the truth."""
    assert tuple(f.name for f in dataclasses.fields(LogNames)) == DYNAMIC_PARTS
    transports: set[str] = set()
    for _, tree in _modules(PRODUCT):
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "of"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "LogNames"
            ):
                assert isinstance(node.args[0], ast.Constant), "LogNames.of takes a literal transport name"
                transports.add(node.args[0].value)
    assert transports == set(DYNAMIC_TRANSPORTS)
    built = {name for t in DYNAMIC_TRANSPORTS for name in dataclasses.astuple(LogNames.of(t))}
    assert built == DYNAMIC
    assert DYNAMIC <= LOG_EVENTS


def test_no_other_name_is_built_at_run_time() -> None:
    """A name computed anywhere else would escape this check: only ``….names.<part>``."""
    built = []
    for where, call in _log_calls(PRODUCT + SIMULATOR):
        first = call.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            continue
        if (
            isinstance(first, ast.Attribute)
            and first.attr in DYNAMIC_PARTS
            and isinstance(first.value, ast.Attribute)
            and first.value.attr == "names"
        ):
            continue
        built.append(f"{where}: {ast.unparse(call)[:80]}")
    assert not built, f"log event names must be string literals: {built}"


def test_the_trace_reads_only_names_that_are_logged() -> None:
    """``responder trace --log`` replays these events: each must be one the product logs."""
    assert set(_Builder("call").handlers) <= LOG_EVENTS
