"""The placement rule's two twins agree: the Lua script inside Redis (callrecord/history.py,
``_ADD_SCRIPT``) and the Python rule (callrecord/placement.py).

Random sequences of additions — at the head, after an item already placed, after an id not
placed (yet, or ever), after the item itself, appended (side items), and additions of an item
already placed — run through ``CallHistory.add_item`` on a real Redis and through
``ConversationOrder.place``; the conversation order and the side items must be the same.
"""

from __future__ import annotations

import uuid

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from callrecord.history import CallHistory, HistoryItem
from callrecord.placement import APPEND, HEAD, ConversationOrder

IDS = [f"item_{n}" for n in range(8)]
GHOST = "item_never_added"

additions = st.lists(
    st.tuples(
        st.sampled_from(IDS),  # the item: new, or one already placed
        st.one_of(st.just(HEAD), st.just(APPEND), st.sampled_from([*IDS, GHOST])),  # where
    ),
    max_size=30,
)


def _item(item_id: str, n: int) -> HistoryItem:
    return HistoryItem(id=item_id, kind="message", role="user", text=f"turn {n}")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(additions)
@example([("item_0", APPEND), ("item_1", APPEND), ("item_2", HEAD), ("item_3", "item_2")])
@example([("item_0", HEAD), ("item_1", APPEND), ("item_2", APPEND), ("item_3", "item_0")])
@example([("item_0", "item_1"), ("item_1", HEAD), ("item_2", "item_1"), ("item_0", HEAD)])
@example([("item_0", "item_0"), ("item_1", GHOST), ("item_2", "item_1")])
async def test_lua_and_python_place_items_alike(history: CallHistory, steps: list[tuple[str, str]]) -> None:
    call_id = "place-" + uuid.uuid4().hex[:12]  # one fresh call per example
    order = ConversationOrder()
    for n, (item_id, where) in enumerate(steps):
        await history.add_item(call_id, _item(item_id, n), where)
        order.place(item_id, where)
    stored = await history.get_items(call_id)
    assert [i.id for i in stored] == order.ids
    side = await history.redis.smembers(history.key(call_id, "side"))
    assert {s.decode() for s in side} == order.side
    last_body = {item_id: f"turn {n}" for n, (item_id, _) in enumerate(steps)}
    assert {i.id: i.text for i in stored} == last_body  # a repeated addition keeps its place, not its body


def test_an_item_placed_again_stays_where_it_is() -> None:
    order = ConversationOrder()
    assert order.place("a", APPEND)
    assert order.place("b", HEAD)
    assert not order.place("a", HEAD)
    assert order.ids == ["b", "a"]
    assert "a" in order and "c" not in order


def test_after_an_item_means_after_the_side_items_that_follow_it() -> None:
    order = ConversationOrder(["user_1", "hold_1", "decision_1", "user_2"], side={"hold_1", "decision_1"})
    order.place("assistant_1", "user_1")
    assert order.ids == ["user_1", "hold_1", "decision_1", "assistant_1", "user_2"]
