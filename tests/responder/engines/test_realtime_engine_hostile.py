"""The Realtime engine against a hostile or buggy server: findings of the adversarial review
of the engine seam whose fixes lie outside the seam's own modules (responder/engines/realtime,
infra), kept as strict expected failures until they are fixed there."""

from __future__ import annotations

import json

import pytest
import structlog

from infra.metrics import REALTIME_ERRORS, realtime_error
from responder.core import engine as ev
from responder.engines.realtime.engine import RealtimeEngine
from tests.support.sockets import ScriptedSocket

LOG = structlog.get_logger("test")


@pytest.mark.xfail(
    strict=True,
    reason="event_shape.shape_problem calls math.isfinite on a JSON integer of 400 digits: "
    "OverflowError escapes RealtimeEngine.events() and the session drops (as before the seam: "
    "the controller's pump called it the same way); fix in responder/engines/realtime/event_shape.py",
)
async def test_a_huge_integer_in_an_event_does_not_end_the_realtime_session() -> None:
    huge = json.loads("1" + "0" * 400)  # valid JSON, within Python's int-string limit
    socket = ScriptedSocket([
        {"type": "conversation.item.truncated", "item_id": "item_1", "audio_end_ms": huge},
        {"type": "session.updated", "session": {}},
    ])  # fmt: skip
    engine = RealtimeEngine(socket, {}, LOG)
    events = [event async for event in engine.events()]
    assert events == [ev.SessionReady()]


@pytest.mark.xfail(
    strict=True,
    reason="infra.metrics.realtime_error labels the counter with the server's error code as sent "
    "(str, 64 chars): a server sending distinct codes grows the registry without bound, for "
    "either engine; fix in infra/metrics.py (a known set, else 'other')",
)
def test_error_codes_from_the_server_do_not_grow_the_metrics_without_bound() -> None:
    """What the controller does with every ``EngineError`` (Realtime ``error.code``, Live
    ``error.code``): count it by its code as the server sent it."""

    def series() -> int:
        return len(next(iter(REALTIME_ERRORS.collect())).samples)

    before = series()
    for n in range(500):
        realtime_error(f"hostile_code_{n}")
    assert series() - before <= 100
