"""The Realtime engine against a hostile or buggy server: findings of the adversarial review
of the engine seam whose fixes lie outside the seam's own modules (responder/engines/realtime,
infra): a 400-digit ``audio_end_ms`` (an OverflowError once) and error codes as metric labels
(one series per code the server made up, once)."""

from __future__ import annotations

import json

import structlog

from infra.metrics import REALTIME_ERRORS, REGISTRY, realtime_error
from responder.core import engine as ev
from responder.engines.realtime.engine import _TRANSLATE, _UNUSED, RealtimeEngine
from responder.engines.realtime.engine import _TYPE_MARK as TYPE_MARK
from tests.support.sockets import ScriptedSocket

LOG = structlog.get_logger("test")


async def test_a_huge_integer_in_an_event_does_not_end_the_realtime_session() -> None:
    huge = json.loads("1" + "0" * 400)  # valid JSON, within Python's int-string limit
    socket = ScriptedSocket([
        {"type": "conversation.item.truncated", "item_id": "item_1", "audio_end_ms": huge},
        {"type": "session.updated", "session": {}},
    ])  # fmt: skip
    engine = RealtimeEngine(socket, {}, LOG)
    events = [event async for event in engine.events()]
    assert events == [ev.SessionReady()]


def test_error_codes_from_the_server_do_not_grow_the_metrics_without_bound() -> None:
    """What the controller does with every ``EngineError`` (Realtime ``error.code``, Live
    ``error.code``): count it by its code when it is a known one, else as "other"."""

    def series() -> int:
        return len(next(iter(REALTIME_ERRORS.collect())).samples)

    before = series()
    for n in range(500):
        realtime_error(f"hostile_code_{n}")
    assert series() - before <= 2  # at most one new label ("other": its _total and _created)
    known = REGISTRY.get_sample_value("responder_realtime_errors_total", {"code": "server_error"}) or 0.0
    realtime_error("server_error")
    assert REGISTRY.get_sample_value("responder_realtime_errors_total", {"code": "server_error"}) == known + 1


async def test_an_audio_delta_that_would_write_into_the_callers_frame_is_not_relayed() -> None:
    """The Twilio caller link splices a delta between the quotes of its media frame: before,
    a delta with a quote made the server the author of the rest of that frame (here a second
    ``event``, a mark of its choosing); now it is skipped (logged) and the next one relayed."""
    delta = {"type": "response.output_audio.delta", "item_id": "item_1", "response_id": "resp_1"}
    socket = ScriptedSocket([
        {**delta, "delta": 'AAAA"},"event":"mark","mark":{"name":"m1'},
        {**delta, "delta": "AAAA\\u0022"},
        {**delta, "delta": "AAAA"},
    ])  # fmt: skip
    engine = RealtimeEngine(socket, {}, LOG)
    events = [event async for event in engine.events()]
    assert events == [ev.AgentAudio("item_1", "resp_1", "AAAA")]


def test_the_barge_in_watch_calls_back_for_a_well_formed_speech_started_only() -> None:
    """The model socket calls the watch for any message with the marker near its start: only
    the event the pump will handle as a barge-in may send the early clear."""
    socket = ScriptedSocket(stay_open=True)
    engine = RealtimeEngine(socket, {}, LOG)
    calls: list[int] = []
    engine.watch_barge_in(lambda: calls.append(1))
    [(marker, seen)] = [(m, s) for m, s in socket.watches.items() if m != TYPE_MARK]
    started = {"type": "input_audio_buffer.speech_started", "event_id": "e1", "audio_start_ms": 5}
    assert marker in json.dumps(started, separators=(",", ":")).encode()
    assert marker in json.dumps(started).encode()  # whatever the spacing
    seen(json.dumps(started).encode())
    assert calls == [1]
    for other in [
        {"type": "error", "error": {"message": "\"input_audio_buffer.speech_started\""}},
        {**started, "item_id": 7},  # the shape check the pump applies refuses it too
        ["input_audio_buffer.speech_started"],
    ]:
        seen(json.dumps(other).encode())
    assert calls == [1]


def test_the_audio_take_relays_a_well_formed_delta_only_and_leaves_the_rest_to_the_pump() -> None:
    """What the model socket offers the audio take is any message with the delta's type near its
    start: only a delta the pump would relay is taken (and only if the controller relays it);
    anything else is left to the pump, which logs and skips what is malformed."""
    socket = ScriptedSocket(stay_open=True)
    engine = RealtimeEngine(socket, {}, LOG)
    offered: list[tuple[str, str | None, str]] = []
    relayed = [True]
    engine.take_audio(lambda item, reply, audio: offered.append((item, reply, audio)) or relayed[0])
    [(marker, seen)] = [(m, s) for m, s in socket.watches.items() if m != TYPE_MARK]
    delta = {
        "type": "response.output_audio.delta", "item_id": "item_1", "response_id": "resp_1", "delta": "AAAA",
    }  # fmt: skip
    assert marker in json.dumps(delta).encode()
    assert seen(json.dumps(delta).encode()) is True
    assert offered == [("item_1", "resp_1", "AAAA")]
    relayed[0] = False  # the controller could not write it at once
    assert seen(json.dumps(delta).encode()) is False
    for other in [
        {**delta, "delta": 'AA"}'},  # would splice into the caller's frame
        {**delta, "delta": ""},
        {**delta, "item_id": 7},
        {**delta, "response_id": ["r"]},
        {"type": "error", "error": {"message": '"response.output_audio.delta"'}},
        ["response.output_audio.delta"],
    ]:
        assert seen(json.dumps(other).encode()) is False
    assert seen(b'{"type":"response.output_audio.delta", "delta": "AAA') is False  # not JSON
    assert len(offered) == 2


def _server_event_types() -> set[str]:
    """Every server event type the installed SDK knows (its ``RealtimeServerEvent`` union)."""
    import typing

    from openai.types import realtime

    def types(annotation: object) -> set[str]:
        found = set().union(*(types(a) for a in typing.get_args(annotation)))
        fields = getattr(annotation, "model_fields", {})
        return found | set(typing.get_args(fields["type"].annotation)) if "type" in fields else found

    return types(realtime.RealtimeServerEvent)


def test_the_events_dropped_unread_are_server_events_the_pump_skips() -> None:
    unused = {t.decode() for t in _UNUSED}
    assert unused <= _server_event_types()
    assert not unused & set(_TRANSLATE)  # the pump would skip every one of them anyway
    assert "response.output_audio.delta" not in unused and "error" not in unused


def test_an_event_of_no_use_is_dropped_as_it_is_read_and_any_other_left_to_the_pump() -> None:
    """The catch-all watch is the last one, whichever the controller sets first, so that the
    audio and barge-in watches still get their messages; it drops only the events the pump
    would skip, read from the start of the message."""
    socket = ScriptedSocket(stay_open=True)
    engine = RealtimeEngine(socket, {}, LOG)
    engine.take_audio(lambda item, reply, audio: True)
    engine.watch_barge_in(lambda: None)
    assert list(socket.watches)[-1] == TYPE_MARK
    drop = socket.watches[TYPE_MARK]
    for kept in [
        {"type": "response.output_item.done", "item": {}},
        {"event_id": "event_9", "type": "conversation.item.done", "item": {}},
        {"type": "rate_limits.updated", "rate_limits": []},
    ]:
        assert drop(json.dumps(kept, separators=(",", ":")).encode()) is True
    for other in [
        {"type": "response.done", "response": {}},
        {"type": "error", "error": {"type": "response.output_item.done"}},
        {"type": "conversation.item.added", "item": {"type": "conversation.item.done"}},
        {"type": "response.output_item.done.x"},
        {"type": "future.event"},  # unknown: the pump decides (and skips it)
    ]:
        assert drop(json.dumps(other, separators=(",", ":")).encode()) is False
    spaced = json.dumps({"type": "response.output_item.done"}).encode()
    assert drop(spaced) is False  # another form: read and skipped by the pump as before
    assert drop(b'{"type":"response.output_item.done') is False  # cut off
