"""A dropped Realtime socket mid-call: a new session, the history replayed, the call resumes.

Full simulated Twilio calls (real service, real Redis, the openai SDK against the simulator);
the simulator closes the realtime socket (code 1011) at a chosen point of the scenario and can
refuse the reconnects (503).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from structlog.testing import capture_logs

from callrecord.history import HistoryItem
from infra import metrics
from infra.settings import Settings
from responder.core import sessions
from responder.core.parked import ParkedEngine
from simulator.caller import CallerReport, place_call
from simulator.realtime_faults import SocketDrop
from simulator.scenario import Scenario, load_scenario
from simulator.state import SimulatorState
from tests.support.service import AUTH_TOKEN, RunningService

SPEED = 8.0
QUESTION = "Can I return a tent I already used on a camping trip?"


def _reconnects(outcome: str) -> float:
    return (
        metrics.REGISTRY.get_sample_value("responder_realtime_reconnects_total", {"outcome": outcome}) or 0.0
    )


async def _call(
    start_service: Callable[..., Any], settings: Settings, scenario: Scenario, drops: list[SocketDrop]
) -> tuple[RunningService, CallerReport, list[HistoryItem], list[dict[str, Any]]]:
    svc: RunningService = await start_service(settings)
    state: SimulatorState = svc.services.simulator.state
    state.socket_drops.extend(drops)
    with capture_logs() as logs:
        report = await place_call(svc.url, scenario, auth_token=AUTH_TOKEN, speed=SPEED, timeout_s=60)
        history = svc.services.history
        async with asyncio.timeout(10):  # the service records the end asynchronously
            while (await history.get_meta(report.call_sid)).get("status") != "ended":
                await asyncio.sleep(0.05)
    items = await history.get_items(report.call_sid)
    return svc, report, items, logs


def _scenario(tmp_path: Path, *, supervisor_delay_s: float = 0.0, quiet_ms: int = 900) -> Path:
    raw = load_scenario("returns").model_dump(exclude_defaults=True)
    raw.update(name="returns_drop", quiet_ms=quiet_ms)
    raw["turns"][1]["supervisor_delay_s"] = supervisor_delay_s
    path = tmp_path / "returns_drop.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _messages(items: list[HistoryItem]) -> list[tuple[str, str]]:
    return [(i.role or "", i.text or "") for i in items if i.kind == "message"]


def _assert_no_duplicates(items: list[HistoryItem]) -> None:
    ids = [i.id for i in items]
    assert len(ids) == len(set(ids)), ids
    keys = [(i.kind, i.role, i.text, i.tool_call_id, i.output) for i in items if i.kind != "dtmf"]
    assert len(keys) == len(set(keys)), keys


def _replayed(state: SimulatorState, session: int) -> list[dict[str, Any]]:
    """The items the service created on realtime session ``session`` (0-based), in order."""
    order = state.conversations[session].order
    records = state.conversations[session].records
    return [records[i].item for i in order]


def _assert_protocol_clean(state: SimulatorState) -> None:
    assert state.invalid_events == [], state.invalid_events
    assert state.errors_sent == [], state.errors_sent


async def test_drop_before_the_question_resumes_on_a_new_session(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    path = _scenario(tmp_path)
    scenario = load_scenario(path)
    before = _reconnects("reconnected")
    # the socket goes away right after the chitchat reply (user turn 1) is done
    drop = SocketDrop(after_event="response.done", user_turns=1)
    svc, report, items, logs = await _call(
        start_service, make_settings(simulator_scenario=str(path)), scenario, [drop]
    )
    state: SimulatorState = svc.services.simulator.state
    assert state.sockets_dropped == 1 and len(state.conversations) == 2
    convo = _messages(items)
    greeting, chitchat = scenario.greeting, scenario.turns[0]
    assert convo[:3] == [("assistant", greeting), ("user", chitchat.say), ("assistant", chitchat.reply)]
    # the second session got the first three items, same ids, as text, before anything else
    second = _replayed(state, 1)
    assert [i["id"] for i in second[:3]] == [i.id for i in items if i.kind == "message"][:3]
    assert [(i["role"], i["content"][0]["type"], i["content"][0]["text"]) for i in second[:3]] == [
        ("assistant", "output_text", greeting),
        ("user", "input_text", chitchat.say),
        ("assistant", "output_text", chitchat.reply),
    ]
    # the call went on there: the question was asked and the grounded answer spoken
    assert ("user", QUESTION) in convo
    [decision] = await svc.services.history.get_decisions(report.call_sid)
    assert decision.outcome == "ok" and "returns@3" in decision.policy_labels()
    assert convo[-1] == ("assistant", decision.text) and "60 days" in decision.text
    assert [t for _, t in convo].count(greeting) == 1  # no second greeting
    kinds = [i.kind for i in items]
    assert kinds.index("function_call") < kinds.index("decision") < kinds.index("function_call_output")
    _assert_no_duplicates(items)
    _assert_protocol_clean(state)
    assert [e["type"] for e in state.client_events].count("session.update") == 2
    [reconnected] = [e for e in logs if e["event"] == "call.realtime_reconnected"]
    assert reconnected["attempt"] == 1 and reconnected["replayed_items"] == 3
    assert reconnected["call_id"] == report.call_sid and reconnected["gap_ms"] > 0
    assert _reconnects("reconnected") == before + 1
    assert not report.hung_up_by_service  # the caller hung up after its last turn, as planned
    assert (await svc.services.history.get_meta(report.call_sid))["end_reason"] == "stop_received"


async def test_drops_before_the_question_and_while_the_supervisor_works(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    path = _scenario(tmp_path, supervisor_delay_s=1.0, quiet_ms=2000)
    scenario = load_scenario(path)
    drops = [
        SocketDrop(after_event="response.done", user_turns=1),  # after the chitchat reply
        # on the second session, right after the response that said the filler and called
        # the supervisor tool: the supervisor is still working when the socket goes
        SocketDrop(after_event="response.done", user_turns=2),
    ]
    svc, report, items, logs = await _call(
        start_service, make_settings(simulator_scenario=str(path)), scenario, drops
    )
    state: SimulatorState = svc.services.simulator.state
    assert state.sockets_dropped == 2 and len(state.conversations) == 3
    [call] = [i for i in items if i.kind == "function_call"]
    [output] = [i for i in items if i.kind == "function_call_output"]
    [decision] = await svc.services.history.get_decisions(report.call_sid)
    assert decision.outcome == "ok" and "returns@3" in decision.policy_labels()
    assert output.tool_call_id == call.tool_call_id and output.output == decision.text
    # each new session got the conversation so far, in order, then went on from there
    replayable = [i.id for i in items if i.kind in ("message", "function_call")]
    second, third = _replayed(state, 1), _replayed(state, 2)
    assert [i["id"] for i in second[:3]] == replayable[:3]
    assert [i["id"] for i in third[:6]] == replayable[:6]
    assert third[5]["type"] == "function_call" and third[5]["call_id"] == call.tool_call_id
    assert third[5]["arguments"] == call.arguments
    # the answer, decided after the second drop, went to the third session and was spoken
    assert third[6]["type"] == "function_call_output" and third[6]["call_id"] == call.tool_call_id
    reconnected = [e for e in logs if e["event"] == "call.realtime_reconnected"]
    assert [(e["drop"], e["replayed_items"]) for e in reconnected] == [(1, 3), (2, 6)]
    answered = next(e for e in logs if e["event"] == "call.supervisor_answer")
    assert logs.index(reconnected[1]) < logs.index(answered)
    convo = _messages(items)
    assert convo[-1] == ("assistant", decision.text)
    ids = [i.id for i in items]
    order = [ids.index(x) for x in (call.id, decision.decision_id, output.id)]
    assert order == sorted(order) and ids.index(output.id) < len(ids) - 1
    assert [t for _, t in convo].count(scenario.greeting) == 1
    _assert_no_duplicates(items)
    _assert_protocol_clean(state)


async def test_drop_mid_answer_replays_only_what_the_caller_heard(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    path = _scenario(tmp_path)
    scenario = load_scenario(path)
    # the socket goes while the chitchat reply is being said, its first four words out (and
    # the caller's transcript in: it arrives 150 ms of audio time after the turn's commit)
    drop = SocketDrop(after_event="response.output_audio_transcript.delta", user_turns=1, nth=4)
    svc, report, items, _ = await _call(
        start_service, make_settings(simulator_scenario=str(path)), scenario, [drop]
    )
    state: SimulatorState = svc.services.simulator.state
    reply = scenario.turns[0].reply or ""
    [cut] = [i for i in items if i.kind == "message" and i.status == "interrupted"]
    assert cut.role == "assistant" and cut.text and reply.startswith(cut.text) and len(cut.text) < len(reply)
    assert cut.audio_end_ms is not None and 0 < cut.audio_end_ms < 4000
    # the new session knows the reply as the caller heard it, not as it was meant to be
    second = _replayed(state, 1)
    assert second[2]["id"] == cut.id
    assert second[2]["content"] == [{"type": "output_text", "text": cut.text}]
    [decision] = await svc.services.history.get_decisions(report.call_sid)
    assert _messages(items)[-1] == ("assistant", decision.text) and "returns@3" in decision.policy_labels()
    _assert_no_duplicates(items)
    _assert_protocol_clean(state)


async def test_caller_turn_without_transcript_at_the_drop_is_recorded_as_lost(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    path = _scenario(tmp_path)
    scenario = load_scenario(path)
    # the reply's first word goes out before the caller's transcript (150 ms of audio later)
    drop = SocketDrop(after_event="response.output_audio_transcript.delta", user_turns=1)
    svc, _, items, logs = await _call(
        start_service, make_settings(simulator_scenario=str(path)), scenario, [drop]
    )
    state: SimulatorState = svc.services.simulator.state
    lost = [i for i in items if i.kind == "message" and i.role == "user" and i.status == "failed"]
    assert len(lost) == 1 and lost[0].text is None
    assert [e["item_id"] for e in logs if e["event"] == "call.user_turn_lost"] == [lost[0].id]
    assert not [i for i in items if i.status == "in_progress"]  # nothing left waiting
    # the new session never hears of it: only the greeting and what was heard of the reply
    [cut] = [i for i in items if i.status == "interrupted"]
    assert [i["id"] for i in _replayed(state, 1)[:2]] == [items[0].id, cut.id]
    assert next(e for e in logs if e["event"] == "call.realtime_reconnected")["replayed_items"] == 2
    _assert_no_duplicates(items)
    _assert_protocol_clean(state)


async def test_answer_sent_into_the_dying_socket_is_delivered_on_the_new_session(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    path = _scenario(tmp_path, quiet_ms=1500)
    scenario = load_scenario(path)
    # the supervisor's answer (the call's first conversation.item.create) never reaches the
    # server: the socket is gone as it arrives
    drop = SocketDrop(after_event="conversation.item.create", user_turns=2, client_event=True)
    svc, report, items, logs = await _call(
        start_service, make_settings(simulator_scenario=str(path)), scenario, [drop]
    )
    state: SimulatorState = svc.services.simulator.state
    assert state.sockets_dropped == 1 and len(state.conversations) == 2
    [decision] = await svc.services.history.get_decisions(report.call_sid)
    [call] = [i for i in items if i.kind == "function_call"]
    [requeued] = [e for e in logs if e["event"] == "call.answer_requeued"]
    assert requeued["tool_call_id"] == call.tool_call_id and requeued["decision_id"] == decision.decision_id
    # delivered once, on the second session, right after the replayed call, and spoken
    [output] = [i for i in items if i.kind == "function_call_output"]
    assert output.tool_call_id == call.tool_call_id and output.output == decision.text
    second = _replayed(state, 1)
    index = next(n for n, i in enumerate(second) if i["id"] == call.id)
    assert (
        second[index + 1]["type"] == "function_call_output" and second[index + 1]["output"] == decision.text
    )
    assert _messages(items)[-1] == ("assistant", decision.text)
    _assert_no_duplicates(items)
    _assert_protocol_clean(state)


async def test_reconnect_that_keeps_failing_ends_the_call_as_realtime_failed(
    start_service: Callable[..., Any],
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sessions, "RECONNECT_BACKOFF_S", (0.05, 0.1, 0.2))
    path = _scenario(tmp_path)
    scenario = load_scenario(path)
    failed_before = _reconnects("failed")
    drop = SocketDrop(after_event="response.done", user_turns=1, refuse_reconnects=10)
    svc, report, items, logs = await _call(
        start_service, make_settings(simulator_scenario=str(path)), scenario, [drop]
    )
    state: SimulatorState = svc.services.simulator.state
    assert state.refuse_realtime == 10 - 3  # three attempts, each refused
    assert len(state.conversations) == 1
    attempts = [e for e in logs if e["event"] == "call.realtime_reconnect_attempt_failed"]
    assert [e["attempt"] for e in attempts] == [1, 2, 3]
    [failed] = [e for e in logs if e["event"] == "call.realtime_reconnect_failed"]
    assert failed["attempts"] == 3 and failed["call_id"] == report.call_sid
    assert any(e["event"] == "call.realtime_failed" for e in logs)
    assert _reconnects("failed") == failed_before + 1
    assert report.hung_up_by_service
    # what was recorded before the drop is all there, and the call is closed
    chitchat = scenario.turns[0]
    assert _messages(items) == [
        ("assistant", scenario.greeting),
        ("user", chitchat.say),
        ("assistant", chitchat.reply),
    ]
    meta = await svc.services.history.get_meta(report.call_sid)
    assert meta["status"] == "ended" and meta["end_reason"] == "realtime_failed"
    _assert_protocol_clean(state)


async def test_the_parked_stand_in_keeps_answers_and_the_newest_audio_only() -> None:
    parked = ParkedEngine("CA0123456789", audio_limit_chars=8)
    await parked.answer_handover("call_1", "Sixty days.")
    request_id = parked.new_request_id()
    await parked.request_reply(request_id, "answer")
    await parked.stop_speaking("item_1", 120)
    assert parked.answers == [("call_1", "Sixty days.")]
    assert parked.dropped == ["reply:answer", "stop_speaking"]
    for chunk in ("aaaa", "bbbb", "cccc"):
        await parked.append_audio(chunk)
    assert list(parked.audio) == ["bbbb", "cccc"] and parked.audio_dropped_chars == 4
    assert parked.audio_chars == 8
    assert [e async for e in parked.events()] == []
    assert (await parked.restore([])).item_ids == frozenset()
