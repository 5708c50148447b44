"""Call admission: concurrent-call cap and per-client token bucket."""

from __future__ import annotations

import pytest

from responder.runtime.admission import AdmissionRefused, CallAdmission
from tests.support.clock import Clock


def test_cap_counts_live_calls_across_transports_and_frees_on_release() -> None:
    admission = CallAdmission(max_calls=2, rate_per_minute=60, burst=10)
    a = admission.admit("sip")
    admission.admit("webrtc")
    with pytest.raises(AdmissionRefused) as refused:
        admission.admit("twilio")
    assert refused.value.reason == "capacity"
    a.release()
    a.release()  # idempotent: one slot freed, not two
    assert admission.active == {"sip": 0, "webrtc": 1}
    admission.admit("twilio")
    with pytest.raises(AdmissionRefused):
        admission.admit("sip")


def test_rate_limit_is_per_client_and_refills_over_time() -> None:
    clock = Clock(1000.0)
    admission = CallAdmission(max_calls=100, rate_per_minute=6, burst=2, clock=clock)
    admission.admit("webrtc", "1.2.3.4")
    admission.admit("webrtc", "1.2.3.4")
    with pytest.raises(AdmissionRefused) as refused:
        admission.admit("webrtc", "1.2.3.4")
    assert refused.value.reason == "rate_limited"
    assert refused.value.retry_after_s == 10  # one token every 10 s at 6 per minute
    admission.admit("webrtc", "5.6.7.8")  # another client is not affected
    clock.now += 10
    admission.admit("webrtc", "1.2.3.4")
    with pytest.raises(AdmissionRefused):
        admission.admit("webrtc", "1.2.3.4")


def test_a_refused_rate_limit_does_not_take_a_slot() -> None:
    admission = CallAdmission(max_calls=5, rate_per_minute=1, burst=1)
    admission.admit("webrtc", "c")
    with pytest.raises(AdmissionRefused):
        admission.admit("webrtc", "c")
    assert admission.active_total == 1


def test_a_promised_call_is_counted_even_when_the_instance_filled_up() -> None:
    admission = CallAdmission(max_calls=1, rate_per_minute=60, burst=10)
    admission.admit("sip")
    ticket = admission.admit("twilio", promised=True)
    assert admission.active == {"sip": 1, "twilio": 1} and not admission.has_room()
    ticket.release()
    assert admission.active_total == 1


def test_a_draining_instance_takes_no_new_calls_but_keeps_promised_ones() -> None:
    admission = CallAdmission(max_calls=5, rate_per_minute=60, burst=5)
    with pytest.raises(AdmissionRefused) as refused:
        admission.admit("sip", draining=True)
    assert refused.value.reason == "capacity" and admission.active_total == 0
    admission.admit("twilio", promised=True, draining=True)  # its webhook was answered before
    assert admission.active == {"twilio": 1}


def test_refusals_are_counted_by_reason_a_drain_apart_from_a_full_instance() -> None:
    from infra.metrics import REGISTRY

    def count(reason: str) -> float:
        labels = {"transport": "webrtc", "reason": reason}
        return REGISTRY.get_sample_value("responder_calls_refused_total", labels) or 0.0

    before = {r: count(r) for r in ("capacity", "draining", "rate_limited")}
    admission = CallAdmission(max_calls=1, rate_per_minute=60, burst=1, clock=Clock())
    ticket = admission.admit("webrtc", "198.51.100.1")
    for _ in range(2):
        with pytest.raises(AdmissionRefused):
            admission.admit("webrtc", "198.51.100.2")  # full
    ticket.release()
    with pytest.raises(AdmissionRefused):
        admission.admit("webrtc", "198.51.100.3", draining=True)
    with pytest.raises(AdmissionRefused):
        admission.admit("webrtc", "198.51.100.1")  # its one token is spent
    assert {r: count(r) - n for r, n in before.items()} == {"capacity": 2, "draining": 1, "rate_limited": 1}
