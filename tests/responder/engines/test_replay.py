"""History items → ``conversation.item.create`` events for a new Realtime session (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from callrecord.history import HistoryItem
from responder.engines.realtime.replay import awaits_answer, replay_events, replay_item
from simulator.realtime_protocol import ClientEventError, validate_client_event


def _items() -> list[HistoryItem]:
    return [
        HistoryItem(id="item_greet", kind="message", role="assistant", text="Hi, this is Robin."),
        HistoryItem(id="dtmf_1", kind="dtmf", role="user", text="5"),
        HistoryItem(id="item_u1", kind="message", role="user", text="Can I return a used tent?"),
        HistoryItem(id="item_fill", kind="message", role="assistant", text="One moment."),
        HistoryItem(
            id="item_fc",
            kind="function_call",
            role="assistant",
            name="getNextResponseFromSupervisor",
            call_id="call_1",
            arguments='{"relevantContextFromLastUserMessage": "used tent"}',
        ),
        HistoryItem(id="hold_1", kind="hold_line", role="assistant", text="Still checking."),
        HistoryItem(id="dec_1", kind="decision", role="system", text="Yes, within 60 days."),
        HistoryItem(
            id="item_out",
            kind="function_call_output",
            role="system",
            call_id="call_1",
            output="Yes, within 60 days.",
        ),
        HistoryItem(
            id="item_ans",
            kind="message",
            role="assistant",
            status="interrupted",
            text="Yes, you can",
            full_text="Yes, you can return it within 60 days.",
            audio_end_ms=900,
        ),
        HistoryItem(id="act_1", kind="action", role="system", name="end_call", text="Bye."),
    ]


def test_replay_keeps_conversation_items_in_order_with_their_ids() -> None:
    events = replay_events(_items())
    items = [e["item"] for e in events]
    assert [i["id"] for i in items] == [
        "item_greet",
        "item_u1",
        "item_fill",
        "item_fc",
        "item_out",
        "item_ans",
    ]
    assert all(e["type"] == "conversation.item.create" for e in events)
    assert items[0]["content"] == [{"type": "output_text", "text": "Hi, this is Robin."}]
    assert items[1] == {
        "id": "item_u1",
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "Can I return a used tent?"}],
    }
    assert items[3] == {
        "id": "item_fc",
        "type": "function_call",
        "call_id": "call_1",
        "name": "getNextResponseFromSupervisor",
        "arguments": '{"relevantContextFromLastUserMessage": "used tent"}',
    }
    assert items[4] == {
        "id": "item_out",
        "type": "function_call_output",
        "call_id": "call_1",
        "output": "Yes, within 60 days.",
    }
    # an interrupted answer is replayed as what the caller heard, never the generated rest
    assert items[5]["content"] == [{"type": "output_text", "text": "Yes, you can"}]


def test_every_replayed_event_is_a_valid_ga_client_event() -> None:
    for event in replay_events(_items()):
        validate_client_event({**event, "event_id": "evt_1"})  # raises ClientEventError if not


def test_an_output_item_shape_the_sdk_refuses_is_caught_by_the_validator() -> None:
    # the validator used above does refuse wrong shapes (the assertion above can fail)
    bad = {
        "type": "conversation.item.create",
        "item": {"type": "message", "role": "user", "content": [{"type": "output_text", "text": "x"}]},
    }
    with pytest.raises(ClientEventError):
        validate_client_event(bad)


def test_items_without_content_or_unfinished_calls_are_not_replayed() -> None:
    assert replay_item(HistoryItem(id="u", kind="message", role="user", text=None, status="failed")) is None
    assert replay_item(HistoryItem(id="a", kind="message", role="assistant", text="  ")) is None
    cut = HistoryItem(id="fc", kind="function_call", name="x", call_id="c", status="in_progress")
    assert replay_item(cut) is None
    out = HistoryItem(id="o", kind="function_call_output", call_id="c", output="late")
    # the output of a call that is not replayed would be refused by the server
    assert replay_events([cut, out]) == []
    no_args = HistoryItem(id="fc2", kind="function_call", name="x", call_id="c2")
    assert replay_item(no_args) == {
        "id": "fc2",
        "type": "function_call",
        "call_id": "c2",
        "name": "x",
        "arguments": "{}",
    }


def test_the_cap_keeps_the_newest_items_and_drops_orphaned_outputs() -> None:
    items = _items()
    events = replay_events(items, limit=3)
    # newest three replayable: function_call, its output, the answer
    assert [e["item"]["id"] for e in events] == ["item_fc", "item_out", "item_ans"]
    events = replay_events(items, limit=2)  # the call is cut off: its output goes too
    assert [e["item"]["id"] for e in events] == ["item_ans"]
    many = [HistoryItem(id=f"u{n}", kind="message", role="user", text=f"turn {n}") for n in range(250)]
    events = replay_events(many)
    assert len(events) == 100 and events[0]["item"]["id"] == "u150" and events[-1]["item"]["id"] == "u249"
    assert replay_events(many, limit=0) == []


@pytest.mark.parametrize(
    ("last", "expected"),
    [
        ({"type": "message", "role": "user"}, True),
        ({"type": "message", "role": "assistant"}, False),
        ({"type": "function_call"}, False),
    ],
)
def test_awaits_answer_only_after_a_caller_turn(last: dict[str, Any], expected: bool) -> None:
    assert awaits_answer([{"type": "conversation.item.create", "item": last}]) is expected
    assert awaits_answer([]) is False
