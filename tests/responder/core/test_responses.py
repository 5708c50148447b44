from __future__ import annotations

from responder.core.responses import REQUEST_TTL_S, TURN, ResponseTracker
from tests.support.clock import Clock


def test_only_tagged_responses_settle_our_requests() -> None:
    clock = Clock()
    t = ResponseTracker(clock=clock)
    t.request_sent("e1", "answer")
    assert not t.idle()
    # turn detection starts a response of its own: our request is still outstanding
    vad = t.created("resp_vad", None)
    assert vad.purpose == TURN
    assert t.done("resp_vad") is vad
    assert not t.idle()  # the answer has not been created yet
    ours = t.created("resp_ans", "answer")
    assert ours.purpose == "answer"
    assert t.done("resp_other") is None and t.active is ours
    assert t.done("resp_ans") is ours and t.idle()


def test_refused_request_is_reported_once_and_lost_ones_expire() -> None:
    clock = Clock()
    t = ResponseTracker(clock=clock)
    t.request_sent("e1", "hold_line")
    assert t.rejected("e1") == "hold_line"
    assert t.rejected("e1") is None and t.rejected(None) is None
    assert t.idle()
    t.request_sent("e2", "answer")
    clock.now += REQUEST_TTL_S + 0.1
    assert t.idle()  # the lost request no longer blocks anything


def test_turn_detection_grace_window() -> None:
    clock = Clock()
    t = ResponseTracker(clock=clock, vad_grace_s=2.0)
    t.speech_stopped()
    assert not t.idle() and t.grace_remaining() == 2.0
    clock.now += 0.5
    t.created("resp_vad", None)  # the expected response arrived: window closed
    assert t.grace_remaining() == 0.0
    t.done("resp_vad")
    assert t.idle()
    t.speech_stopped()
    clock.now += 2.1  # nothing came (create_response off): idle again by itself
    assert t.idle()
