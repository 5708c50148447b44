"""OpenAI SIP calls: the signed ``realtime.call.incoming`` webhook → accept → sideband controller.

The simulator plays OpenAI: it signs the webhook the Standard Webhooks way, serves
``/v1/realtime/calls/{id}/accept|reject|refer|hangup``, and plays the caller on the sideband.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from infra.settings import Settings
from simulator.scenario import load_scenario
from simulator.sip import send_incoming_call
from tests.support.calls import conversation, ended_call_items
from tests.support.service import FAST_SPEED, RunningService
from tests.support.sideband import SIP_SECRET
from tests.support.waits import wait_until


async def _service(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings], **kw: Any
) -> RunningService:
    """The service, its simulator playing the caller on the sideband at the fast speed (no
    test here is about audio timing)."""
    return await start_service(
        make_settings(openai_webhook_secret=SIP_SECRET, simulator_speed=FAST_SPEED, **kw)
    )


def _webhook(svc: RunningService) -> str:
    return svc.url + "/openai/sip"


async def test_sip_call_is_accepted_and_served_like_a_phone_call(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc = await _service(start_service, make_settings, simulator_scenario="returns")
    state = svc.services.simulator.state
    delivery = await send_incoming_call(_webhook(svc), SIP_SECRET, state=state)
    assert delivery.statuses == [200]
    items = await ended_call_items(svc, delivery.call_id)

    scenario = load_scenario("returns")
    convo = conversation(items)
    assert convo[0] == ("assistant", scenario.greeting)
    assert ("user", scenario.turns[1].say) in convo
    answer = convo[-1]
    assert answer[0] == "assistant" and "60 days" in answer[1]
    [decision] = await svc.services.history.get_decisions(delivery.call_id)
    assert decision.outcome == "ok" and "returns@3" in decision.policy_labels()
    meta = await svc.services.history.get_meta(delivery.call_id)
    assert meta["transport"] == "sip" and "+15555550123" in meta["caller"]

    [(_, body)] = [a for a in state.actions_for(delivery.call_id) if a[0] == "accept"]
    assert body["type"] == "realtime"
    assert {t["name"] for t in body["tools"]} == {
        "getNextResponseFromSupervisor",
        "escalate_to_human",
        "end_call",
    }
    assert "format" not in body["audio"]["input"]  # SIP negotiates its own codec
    assert state.invalid_events == [] and state.errors_sent == []


async def test_bad_signature_is_refused_and_starts_nothing(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc = await _service(start_service, make_settings)
    state = svc.services.simulator.state
    delivery = await send_incoming_call(_webhook(svc), SIP_SECRET, state=state, bad_signature=True)
    assert delivery.statuses == [401]
    assert state.actions_for(delivery.call_id) == []
    assert await svc.services.history.get_meta(delivery.call_id) == {}


async def test_missing_signature_is_a_bad_request(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    import aiohttp

    svc = await _service(start_service, make_settings)
    body = b'{"type":"realtime.call.incoming","data":{"call_id":"rtc_nosig"}}'
    async with aiohttp.ClientSession() as http, http.post(_webhook(svc), data=body) as resp:
        assert resp.status == 400
    assert svc.services.simulator.state.call_actions == []
    assert await svc.services.history.get_meta("rtc_nosig") == {}


async def test_without_a_configured_secret_every_webhook_is_refused(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc = await start_service(make_settings())
    delivery = await send_incoming_call(_webhook(svc), SIP_SECRET, state=svc.services.simulator.state)
    assert delivery.statuses == [401]
    assert svc.services.simulator.state.call_actions == []


async def test_duplicate_deliveries_start_one_controller(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc = await _service(start_service, make_settings, simulator_scenario="returns")
    state = svc.services.simulator.state
    delivery = await send_incoming_call(_webhook(svc), SIP_SECRET, state=state, duplicate=3)
    assert delivery.statuses == [200, 200, 200]
    assert sorted(delivery.bodies) == sorted(
        ['{"status": "accepted"}', '{"status": "duplicate"}', '{"status": "duplicate"}']
    )
    items = await ended_call_items(svc, delivery.call_id)
    assert [a for a, _ in state.actions_for(delivery.call_id)].count("accept") == 1
    greetings = [t for r, t in conversation(items) if t == load_scenario("returns").greeting]
    assert len(greetings) == 1
    assert len(await svc.services.history.get_decisions(delivery.call_id)) == 1


async def test_accept_404_because_the_caller_hung_up_is_not_an_error(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc = await _service(start_service, make_settings)
    state = svc.services.simulator.state
    call = state.add_call("sip")
    state.caller_hangs_up(call.id)
    delivery = await send_incoming_call(_webhook(svc), SIP_SECRET, call_id=call.id)
    assert delivery.statuses == [200] and delivery.bodies == ['{"status": "gone"}']
    assert await svc.services.history.get_meta(call.id) == {}
    assert svc.services.admission.active_total == 0  # the slot it took is free again


async def test_at_capacity_the_call_is_rejected_as_busy(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc = await _service(start_service, make_settings, max_concurrent_calls=0)
    state = svc.services.simulator.state
    delivery = await send_incoming_call(_webhook(svc), SIP_SECRET, state=state)
    assert delivery.statuses == [200]
    assert state.actions_for(delivery.call_id) == [("reject", {"status_code": 486})]
    assert state.calls[delivery.call_id].status == "rejected"


async def test_escalation_refers_the_sip_call_and_records_the_action(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc = await _service(
        start_service, make_settings, simulator_scenario="escalate", escalation_sip_uri="tel:+15555550199"
    )
    state = svc.services.simulator.state
    delivery = await send_incoming_call(_webhook(svc), SIP_SECRET, state=state)
    items = await ended_call_items(svc, delivery.call_id)
    [action] = [i for i in items if i.kind == "action"]
    assert action.name == "escalate_to_human"
    assert action.meta["outcome"] == "done" and action.meta["target"] == "tel:+15555550199"
    assert action.meta["transport"] == "sip" and action.meta["reason"]
    assert ("refer", {"target_uri": "tel:+15555550199"}) in state.actions_for(delivery.call_id)
    # the caller heard the handoff line before the transfer
    assert any("connecting you with a colleague" in t for r, t in conversation(items) if r == "assistant")
    assert_no_errors(svc)


async def test_end_call_hangs_up_the_sip_call(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc = await _service(start_service, make_settings, simulator_scenario="hangup")
    state = svc.services.simulator.state
    delivery = await send_incoming_call(_webhook(svc), SIP_SECRET, state=state)
    items = await ended_call_items(svc, delivery.call_id)
    [action] = [i for i in items if i.kind == "action"]
    assert action.name == "end_call" and action.meta["outcome"] == "done"
    assert [a for a, _ in state.actions_for(delivery.call_id)][-1] == "hangup"
    assert state.calls[delivery.call_id].status == "hung_up"
    assert_no_errors(svc)


def assert_no_errors(svc: RunningService) -> None:
    state = svc.services.simulator.state
    assert state.invalid_events == [], state.invalid_events
    assert state.errors_sent == [], state.errors_sent


async def test_signed_garbage_is_a_bad_request_and_other_event_types_are_acknowledged(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    import aiohttp

    from simulator.sip import sign

    svc = await _service(start_service, make_settings)
    other = '{"id":"evt_1","object":"event","type":"batch.completed","created_at":1,"data":{"id":"b"}}'
    incoming = '{"id":"evt_2","object":"event","type":"realtime.call.incoming","created_at":1,"data":'
    odd = [
        (incoming + "null}", 400),
        (incoming + '"rtc_x"}', 400),
        (incoming + '{"call_id":["rtc_x"]}}', 400),
        (incoming + '{"call_id":"../../etc"}}', 400),
        ("[1, 2]", 200),  # no event type: acknowledged and ignored
    ]
    async with aiohttp.ClientSession() as http:
        for body, expected in (("not json {", 400), (other, 200), *odd):
            headers = sign(body, SIP_SECRET, webhook_id="msg_test")
            async with http.post(_webhook(svc), data=body.encode(), headers=headers) as resp:
                assert resp.status == expected, await resp.text()
    assert svc.services.simulator.state.call_actions == []


async def test_sip_keypad_presses_are_recorded_in_order(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc = await _service(start_service, make_settings, simulator_scenario="dtmf")
    delivery = await send_incoming_call(_webhook(svc), SIP_SECRET, state=svc.services.simulator.state)
    items = await ended_call_items(svc, delivery.call_id)
    kinds = [(i.kind, i.text) for i in items if i.kind in ("dtmf", "message") and i.role == "user"]
    assert kinds[0] == ("dtmf", "1")
    assert kinds[1] == ("message", "I'm calling about an order I placed online.")


async def test_concurrent_duplicate_deliveries_start_one_controller(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc = await _service(start_service, make_settings, simulator_scenario="returns")
    state = svc.services.simulator.state
    delivery = await send_incoming_call(_webhook(svc), SIP_SECRET, state=state, duplicate=4, concurrent=True)
    assert delivery.statuses == [200] * 4
    assert sorted(delivery.bodies).count('{"status": "accepted"}') == 1
    assert sorted(delivery.bodies).count('{"status": "duplicate"}') == 3
    items = await ended_call_items(svc, delivery.call_id)
    assert [a for a, _ in state.actions_for(delivery.call_id)].count("accept") == 1
    assert len([t for _, t in conversation(items) if t == load_scenario("returns").greeting]) == 1
    assert len(await svc.services.history.get_decisions(delivery.call_id)) == 1


async def test_a_refused_transfer_is_recorded_and_the_caller_is_not_left_on_the_line(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    bad_target = "mailto:desk@example.com"  # OpenAI refers to tel: and sip: URIs only
    svc = await _service(
        start_service, make_settings, simulator_scenario="escalate", escalation_sip_uri=bad_target
    )
    state = svc.services.simulator.state
    delivery = await send_incoming_call(_webhook(svc), SIP_SECRET, state=state)
    items = await ended_call_items(svc, delivery.call_id)
    [action] = [i for i in items if i.kind == "action"]
    assert action.meta["outcome"] == "failed" and action.meta["target"] is None
    assert "BadRequest" in action.meta["error"] and "hung up instead" in action.meta["error"]
    # the refer was refused (400): the service hung up rather than leave an unsupervised model
    assert [a for a, _ in state.actions_for(delivery.call_id)][-1] == "hangup"
    assert state.calls[delivery.call_id].status == "hung_up"
    # the slot is freed as the controller closes, just after the call's end is recorded
    await wait_until(lambda: svc.services.admission.active_total == 0, 5, 0.02, what="the slot freed")


async def test_a_draining_instance_rejects_new_calls_as_busy(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc = await _service(start_service, make_settings)
    svc.services.draining = True  # what SIGTERM sets
    state = svc.services.simulator.state
    delivery = await send_incoming_call(_webhook(svc), SIP_SECRET, state=state)
    assert delivery.statuses == [200] and "rejected" in delivery.bodies[0]
    assert state.actions_for(delivery.call_id) == [("reject", {"status_code": 486})]
    assert await svc.services.history.get_meta(delivery.call_id) == {}
