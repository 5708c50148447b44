"""A call's trace from Redis and the trace rebuilt from its JSON log file alone agree."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from callrecord.history import HEAD, CallHistory
from infra.logs import configure_logging
from infra.settings import Settings
from responder.cli import trace as trace_command
from responder.core.engine import AgentTruncated, ConversationItem, ItemAdded
from responder.core.recorder import TranscriptRecorder
from responder.trace import render_text, trace_from_log, trace_from_redis, valid_call_id
from responder.trace.model import Trace
from simulator.scenario import load_scenario
from tests.support.calls import run_call, wait_for_status
from tests.support.logs import read_log
from tests.support.service import FAST_SPEED, TIMING_SPEED
from tests.support.sideband import SIP_SECRET
from tests.support.waits import wait_until


@pytest.fixture
def json_log(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "logs" / "service.jsonl"
    configure_logging("json", "INFO", redact=True, log_file=path)
    yield path
    configure_logging("console", "INFO")  # closes the file
    structlog.reset_defaults()


async def _traces(svc: Any, call_id: str, log_path: Path) -> tuple[Trace, Trace]:
    from_redis = await trace_from_redis(svc.services.history, call_id)
    text = await read_log(log_path)
    from_log = trace_from_log(text.splitlines(), call_id)
    assert from_redis is not None and from_log is not None
    return from_redis, from_log


async def test_redis_and_log_traces_agree_on_a_grounded_call(
    start_service: Callable[..., Any],
    make_settings: Callable[..., Settings],
    json_log: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scenario = load_scenario("returns")
    settings = make_settings(simulator_scenario="returns")
    svc, report, _ = await run_call(start_service, settings, scenario)
    redis_trace, log_trace = await _traces(svc, report.call_sid, json_log)

    assert redis_trace.comparable() == log_trace.comparable()
    # and the agreed trace says what happened
    kinds = [e.kind for e in redis_trace.entries]
    texts = [(e.kind, e.text) for e in redis_trace.entries]
    assert ("user", scenario.turns[1].say) in texts
    assert ("filler", scenario.turns[1].filler) in texts
    assert kinds.index("filler") + 1 == kinds.index("tool_call")
    assert redis_trace.status == "ended" and redis_trace.transport == "twilio"
    (decision,) = redis_trace.decisions
    assert decision.outcome == "ok" and "returns@3" in decision.policies
    assert any(t.name == "lookupPolicyDocument" and t.round == 1 for t in decision.tool_calls)
    assert decision.user_item_id == next(
        e.item_id for e in redis_trace.entries if e.text == scenario.turns[1].say
    )
    # what the responder said after the decision is the supervisor's answer, rephrased
    after = kinds.index("decision")
    spoken = [e.text or "" for e in redis_trace.entries[after:] if e.kind == "assistant"]
    assert spoken and "60 days" in spoken[-1]

    text = render_text(log_trace)
    assert decision.decision_id in text and "returns@3" in text and "lookupPolicyDocument(" in text

    # the command prints the same trace from either source
    for log in (None, str(json_log)):
        args = argparse.Namespace(call_id=report.call_sid, log=log, json=True)
        assert await trace_command.run(settings, args) == 0
        printed = json.loads(capsys.readouterr().out)
        assert printed["decisions"][0]["decision_id"] == decision.decision_id
        assert printed["source"] == ("log" if log else "redis")


async def test_redis_and_log_traces_agree_on_a_barge_in(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings], json_log: Path
) -> None:
    scenario = load_scenario("barge_in")
    settings = make_settings(simulator_scenario="barge_in")
    svc, report, _ = await run_call(start_service, settings, scenario, speed=TIMING_SPEED)
    redis_trace, log_trace = await _traces(svc, report.call_sid, json_log)

    assert redis_trace.comparable() == log_trace.comparable()
    cut = [e for e in log_trace.entries if e.status == "interrupted"]
    assert len(cut) == 1 and cut[0].audio_end_ms and cut[0].full_text
    assert cut[0].text and len(cut[0].text) < len(cut[0].full_text)
    assert "barge-in" in render_text(log_trace)


async def test_unknown_and_invalid_call_ids(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    svc = await start_service(make_settings())
    assert await trace_from_redis(svc.services.history, "CA-never-happened") is None
    assert trace_from_log(['{"event": "call.started", "call_id": "CAother"}', "not json"], "CAx") is None
    for bad in ("{slot}", "a*", "a b", "", "x" * 200):
        assert not valid_call_id(bad)
        with pytest.raises(ValueError):
            await trace_from_redis(svc.services.history, bad)


async def test_redis_and_log_traces_agree_on_a_hold_line(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings], json_log: Path
) -> None:
    scenario = load_scenario("slow_supervisor").model_copy(update={"quiet_ms": 2000})
    settings = make_settings(
        simulator_scenario="slow_supervisor", hold_delay_s=0.8, supervisor_deadline_s=8.0
    )
    svc, report, _ = await run_call(start_service, settings, scenario)
    redis_trace, log_trace = await _traces(svc, report.call_sid, json_log)

    assert redis_trace.comparable() == log_trace.comparable()
    kinds = [e.kind for e in log_trace.entries]
    assert kinds.count("hold_line") == 1
    # the hold line was said while the supervisor worked: after the tool call, before its decision
    assert kinds.index("tool_call") < kinds.index("hold_line") < kinds.index("decision")


async def test_redis_and_log_traces_agree_on_a_fallback(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings], json_log: Path
) -> None:
    scenario = load_scenario("supervisor_timeout").model_copy(update={"quiet_ms": 1800})
    settings = make_settings(
        simulator_scenario="supervisor_timeout", supervisor_deadline_s=1.0, hold_delay_s=0.5
    )
    svc, report, _ = await run_call(start_service, settings, scenario)
    redis_trace, log_trace = await _traces(svc, report.call_sid, json_log)

    assert redis_trace.comparable() == log_trace.comparable()
    (decision,) = log_trace.decisions
    assert decision.outcome == "timeout" and log_trace.outcome == "timeout"
    assert decision.text and decision.policies == []
    # the fallback text went back to the responder as the tool output
    outputs = [e.text for e in log_trace.entries if e.kind == "tool_output"]
    assert outputs == [decision.text]
    assert "outcome=timeout" in render_text(log_trace) and "FALLBACK (timeout)" in render_text(log_trace)


async def test_sip_call_traces_agree_on_a_transfer(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings], json_log: Path
) -> None:
    """A SIP call escalated by ``refer``: the action, its reason and target, from either source."""
    from simulator.sip import send_incoming_call

    settings = make_settings(
        simulator_scenario="escalate", openai_webhook_secret=SIP_SECRET,
        escalation_sip_uri="tel:+15555550199", simulator_speed=FAST_SPEED,
    )  # fmt: skip
    from infra.metrics import REGISTRY

    def sip_calls() -> float:
        labels = {"transport": "sip", "outcome": "ok"}
        return REGISTRY.get_sample_value("responder_calls_total", labels) or 0.0

    before = sip_calls()
    svc = await start_service(settings)
    delivery = await send_incoming_call(
        svc.url + "/openai/sip", SIP_SECRET, state=svc.services.simulator.state
    )
    await wait_for_status(svc, delivery.call_id, {"ended", "failed"})
    # the counter moves when the controller closes, right after the meta
    await wait_until(lambda: sip_calls() == before + 1, 2.5, 0.05, what="the SIP call counted")
    assert REGISTRY.get_sample_value("responder_active_calls", {"transport": "sip"}) == 0
    redis_trace, log_trace = await _traces(svc, delivery.call_id, json_log)

    assert redis_trace.comparable() == log_trace.comparable()
    assert log_trace.transport == "sip" and log_trace.status == "ended"
    (action,) = [e for e in log_trace.entries if e.kind == "action"]
    assert (action.name, action.outcome, action.target) == ("escalate_to_human", "done", "tel:+15555550199")
    assert action.reason and action.error is None
    assert "escalate_to_human done → tel:+15555550199" in render_text(log_trace)


async def test_server_side_truncation_traces_agree(history: CallHistory, json_log: Path) -> None:
    """SIP/WebRTC: the server cuts the audio (``call.barge_in`` with ``by="server"``); the
    recorder keeps the whole transcript, and so must the trace rebuilt from the log."""
    call_id = "rtc_trace_cut"
    log = structlog.get_logger("test").bind(call_id=call_id)
    rec = TranscriptRecorder(call_id, history, log)
    await history.start_call(call_id, transport="webrtc")
    log.info("call.started", transport="webrtc")
    await rec.item_added(ItemAdded(ConversationItem("item_cut", "message", "assistant"), HEAD))
    await rec.truncated_by_engine(AgentTruncated("item_cut", 900))
    await rec.assistant_transcript("item_cut", "Our return window is sixty days for most items.", "answer")
    assert await rec.flush(5.0)

    redis_trace = await trace_from_redis(history, call_id)
    text = await read_log(json_log)
    log_trace = trace_from_log(text.splitlines(), call_id)
    assert redis_trace is not None and log_trace is not None
    assert redis_trace.comparable() == log_trace.comparable()
    (cut,) = log_trace.entries
    assert cut.interrupted and cut.audio_end_ms == 900
    assert cut.text == cut.full_text == "Our return window is sixty days for most items."
