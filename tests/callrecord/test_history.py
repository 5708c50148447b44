from __future__ import annotations

import asyncio
import json

from redis.asyncio import Redis

from callrecord.decisions import Decision, PolicyRef
from callrecord.history import HEAD, CallHistory, HistoryItem


async def test_items_follow_previous_item_id_not_arrival_order(history: CallHistory) -> None:
    await history.add_item("c1", HistoryItem(id="a1", kind="message", role="assistant", text="Hi"), HEAD)
    # the assistant reply arrives before the user item it follows is recorded
    await history.add_item("c1", HistoryItem(id="u1", kind="message", role="user", text=None), "a1")
    await history.add_item("c1", HistoryItem(id="a2", kind="message", role="assistant", text="Sure"), "u1")
    await history.add_item("c1", HistoryItem(id="u0", kind="message", role="user", text="late"), "a1")
    ids = [i.id for i in await history.get_items("c1")]
    assert ids == ["a1", "u0", "u1", "a2"]


async def test_unknown_previous_item_appends_and_re_add_is_idempotent(history: CallHistory) -> None:
    await history.add_item("c2", HistoryItem(id="x", kind="message", role="user", text="one"))
    await history.add_item("c2", HistoryItem(id="y", kind="dtmf", text="5"), "missing")
    await history.add_item("c2", HistoryItem(id="x", kind="message", role="user", text="two"), "y")
    items = await history.get_items("c2")
    assert [i.id for i in items] == ["x", "y"]
    assert items[0].text == "two"


async def test_late_transcript_and_truncation_update_in_place(history: CallHistory) -> None:
    await history.add_item("c3", HistoryItem(id="u", kind="message", role="user", status="in_progress"))
    await history.add_item("c3", HistoryItem(id="a", kind="message", role="assistant", text="long answer"))
    await history.update_item("c3", "u", text="what is the return window?", status="completed")
    await history.update_item("c3", "a", text="long", status="interrupted", audio_end_ms=420)
    u, a = await history.get_items("c3")
    assert (u.text, u.status) == ("what is the return window?", "completed")
    assert (a.text, a.status, a.audio_end_ms) == ("long", "interrupted", 420)
    assert await history.update_item("c3", "nope", text="x") is None


async def test_get_items_limit_keeps_newest_in_chronological_order(history: CallHistory) -> None:
    for n in range(6):
        await history.add_item("c4", HistoryItem(id=f"i{n}", kind="message", role="user", text=str(n)))
    assert [i.text for i in await history.get_items("c4", limit=3)] == ["3", "4", "5"]
    assert await history.get_items("empty") == []


async def test_writes_refresh_ttl(history: CallHistory) -> None:
    await history.add_item("c5", HistoryItem(id="i", kind="message", role="user", text="x"))
    ttl = await history.redis.ttl(history.key("c5", "order"))
    assert 3500 < ttl <= 3600
    await history.redis.expire(history.key("c5", "items"), 10)
    await history.update_item("c5", "i", text="y")
    assert await history.redis.ttl(history.key("c5", "items")) > 3500


async def test_decisions_are_stored_and_listed(history: CallHistory) -> None:
    d = Decision(
        call_id="c6",
        user_item_id="u1",
        text="Returns are accepted within 30 days.",
        policies=[PolicyRef(id="returns", version=3)],
    )
    await history.add_decision("c6", d)
    [stored] = await history.get_decisions("c6")
    assert stored.decision_id == d.decision_id
    assert stored.policy_labels() == ["returns@3"]
    [item] = await history.get_items("c6")
    assert item.kind == "decision" and item.meta["policies"] == ["returns@3"]


async def test_meta_and_recent_calls(history: CallHistory) -> None:
    await history.start_call("c7", transport="twilio", caller="+15550001111")
    await history.set_meta("c7", status="ended")
    meta = await history.get_meta("c7")
    assert meta["transport"] == "twilio" and meta["status"] == "ended"
    assert "c7" in await history.recent_calls()


async def test_side_items_keep_their_place_before_later_conversation_items(history: CallHistory) -> None:
    await history.add_item("c8", HistoryItem(id="u1", kind="message", role="user", text="q"), HEAD)
    await history.add_item("c8", HistoryItem(id="f1", kind="function_call", name="t"), "u1")
    await history.add_item("c8", HistoryItem(id="hold", kind="hold_line", role="assistant", text="wait"))
    await history.add_item("c8", HistoryItem(id="d1", kind="dtmf", text="1"))
    # the server places the caller's next item after f1; the hold line and key press came first
    await history.add_item("c8", HistoryItem(id="u2", kind="message", role="user", text="again"), "f1")
    # an item anchored on a side item goes after it and after the side items that followed it
    await history.add_item("c8", HistoryItem(id="out", kind="function_call_output", output="x"), "hold")
    assert [i.id for i in await history.get_items("c8")] == ["u1", "f1", "hold", "d1", "out", "u2"]


async def test_get_items_reads_long_histories(history: CallHistory) -> None:
    order, items = history.key("c9", "order"), history.key("c9", "items")
    async with history.redis.pipeline(transaction=False) as pipe:
        for n in range(9000):
            pipe.rpush(order, f"i{n}")
            pipe.hset(
                items, f"i{n}", HistoryItem(id=f"i{n}", kind="dtmf", text=str(n % 10)).model_dump_json()
            )
        await pipe.execute()
    got = await history.get_items("c9")
    assert len(got) == 9000 and got[0].id == "i0" and got[-1].id == "i8999"
    assert [i.id for i in await history.get_items("c9", limit=2)] == ["i8998", "i8999"]


async def test_a_tool_call_id_is_stored_and_announced_as_call_id(history: CallHistory) -> None:
    """``HistoryItem.tool_call_id`` keeps the Redis layout's JSON field ``call_id``."""
    pubsub = history.redis.pubsub()
    await pubsub.subscribe(history.channel("c10"))
    await pubsub.get_message(timeout=1)  # the subscription
    call = HistoryItem(id="f1", kind="function_call", name="lookup", tool_call_id="call_1", arguments="{}")
    await history.add_item("c10", call)
    await history.update_item("c10", "f1", status="completed")
    raw = json.loads(await history.redis.hget(history.key("c10", "items"), "f1"))
    assert raw["call_id"] == "call_1" and "tool_call_id" not in raw
    added = json.loads((await pubsub.get_message(timeout=1))["data"])
    updated = json.loads((await pubsub.get_message(timeout=1))["data"])
    assert added["item"]["call_id"] == updated["item"]["call_id"] == "call_1"
    await pubsub.aclose()
    [stored] = await history.get_items("c10")
    assert stored.tool_call_id == "call_1"
    assert HistoryItem(id="o1", kind="function_call_output", call_id="call_1").tool_call_id == "call_1"


async def test_a_call_keeps_at_most_max_items_and_key_presses_stop_sooner(
    redis: Redis, key_prefix: str
) -> None:
    """Issue 14, item 5: one call's record is bounded. Past the limit a new item is refused
    (False); an item already there is still updated; key presses stop
    10 % sooner, so that a caller pressing keys cannot crowd the conversation out."""
    history = CallHistory(redis, prefix=key_prefix, ttl_s=600, max_items=50)
    assert history.item_limit("dtmf") == 45 and history.item_limit("message") == 50
    key_presses = [
        await history.add_item("cap", HistoryItem(id=f"k{n}", kind="dtmf", text="5")) for n in range(60)
    ]
    assert key_presses == [True] * 45 + [False] * 15
    said = [
        await history.add_item("cap", HistoryItem(id=f"u{n}", kind="message", role="user", text="hi"))
        for n in range(8)
    ]
    assert said == [True] * 5 + [False] * 3  # the conversation's reserve, then the hard limit
    decision = Decision(call_id="cap", user_item_id="u0", text="No.", policies=[])
    await history.add_decision("cap", decision)
    assert await history.get_decisions("cap") == []  # refused with its item, not half recorded
    assert await history.add_item("cap", HistoryItem(id="u0", kind="message", role="user", text="hello"))
    items = await history.get_items("cap")
    assert len(items) == 50 and items[45].text == "hello"
    assert await history.redis.llen(history.key("cap", "order")) == 50


async def test_concurrent_updates_of_one_item_all_land_and_are_announced(history: CallHistory) -> None:
    """An update writes only over what it read (compare-and-set): updates racing on the same
    item, each setting its own field, all end up in it; each is announced once, as valid JSON."""
    await history.add_item("c9", HistoryItem(id="a", kind="message", role="assistant", text="x"))
    pubsub = history.redis.pubsub()
    await pubsub.subscribe(history.channel("c9"))
    await pubsub.get_message(timeout=1.0)  # the subscription's confirmation
    fields = [{"text": "heard part"}, {"status": "interrupted"}, {"audio_end_ms": 420}, {"meta": {"k": "v"}}]
    await asyncio.gather(*(history.update_item("c9", "a", **f) for f in fields))  # all read, then all write
    (item,) = await history.get_items("c9")
    assert (item.text, item.status, item.audio_end_ms) == ("heard part", "interrupted", 420)
    assert item.meta == {"k": "v"}
    announced = []
    while (message := await pubsub.get_message(timeout=0.5)) is not None:
        announced.append(json.loads(message["data"]))
    await pubsub.aclose()
    assert len(announced) == len(fields)
    assert {m["type"] for m in announced} == {"item.updated"}
    assert announced[-1]["item"]["id"] == "a"


async def test_an_update_starts_from_the_items_own_last_write_and_never_loses_another_writer(
    history: CallHistory,
) -> None:
    """The copy of what this process last wrote saves the update's read; another process's
    write meanwhile (a second CallHistory on the same Redis) makes the compare fail, and the
    update reads the item and applies its field on top of that write instead."""
    reads: list[str] = []
    hget = history.redis.hget

    async def counted_hget(key: str, field: str) -> object:
        reads.append(field)
        return await hget(key, field)

    history.redis.hget = counted_hget  # type: ignore[method-assign]  # counts, Redis answers
    await history.add_item("c10", HistoryItem(id="a", kind="message", role="assistant", text="x"))
    await history.update_item("c10", "a", status="in_progress")
    await history.update_item("c10", "a", text="hello")
    assert reads == []  # both updates started from the kept copy
    other = CallHistory(history.redis, prefix=history.prefix, ttl_s=history.ttl_s)
    await other.update_item("c10", "a", audio_end_ms=420)  # another process, same item
    updated = await history.update_item("c10", "a", status="interrupted")
    assert reads == ["a", "a"]  # the other writer's read, then ours after the failed compare
    assert updated is not None
    (item,) = await history.get_items("c10")
    assert (item.text, item.status, item.audio_end_ms) == ("hello", "interrupted", 420)
    await history.redis.delete(*history._keys("c10"))
    assert await history.update_item("c10", "a", text="gone") is None  # the kept copy is no item
