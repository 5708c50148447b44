"""The live transcript stream ``GET /calls/{call_id}/events`` (Server-Sent Events from Redis)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import aiohttp

from callrecord.decisions import Decision, PolicyRef, ToolCallRecord
from callrecord.history import HistoryItem
from infra.settings import Settings
from responder.web import live
from tests.support.service import RunningService
from tests.support.sse import events_url, sse_events


def decision_for(call_id: str, user_item: str) -> Decision:
    return Decision(
        call_id=call_id,
        user_item_id=user_item,
        context="used tent",
        policies=[PolicyRef(id="returns", version=3)],
        tool_calls=[
            ToolCallRecord(
                name="getUserAccountInfo",
                arguments={"phone_number": "+15555550123"},
                result_summary="member since 2019, phone +15555550123",
                ms=3.0,
            )
        ],
        text="Used gear can be returned within 60 days.",
        outcome="ok",
    )


async def test_replay_then_live_updates_until_the_call_ends(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings], monkeypatch: Any
) -> None:
    monkeypatch.setattr(live, "HEARTBEAT_S", 0.2)
    svc: RunningService = await start_service(make_settings())
    history = svc.services.history
    call_id = "ws_live0001"
    await history.start_call(call_id, transport="websocket", caller="+15555550123")
    user = HistoryItem(id="item_u1", kind="message", role="user", text="Can I return a used tent?")
    await history.add_item(call_id, user)
    filler = HistoryItem(id="item_a1", kind="message", role="assistant", text="One moment.")
    await history.add_item(call_id, filler)
    await history.add_decision(call_id, decision_for(call_id, "item_u1"))

    seen: list[tuple[str, Any]] = []
    async with aiohttp.ClientSession() as http, http.get(events_url(svc, call_id)) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        async with asyncio.timeout(10):
            async for event, data in sse_events(resp):
                seen.append((event, data))
                if event == "decision":  # replay done: now write live
                    hold = HistoryItem(id="hold_1", kind="hold_line", role="assistant", text="Checking.")
                    await history.add_item(call_id, hold)
                    await history.update_item(call_id, "item_a1", text="One moment, please.")
                if event == "comment" and data == "keep-alive":
                    await history.set_meta(call_id, status="ended")
    names = [name for name, _ in seen]
    # replay: meta, the items in conversation order, the decision record
    assert seen[0][0] == "call.meta"
    assert seen[0][1]["status"] == "active" and seen[0][1]["transport"] == "websocket"
    replayed = [d["item"]["id"] for n, d in seen[1:4]]
    assert names[1:4] == ["item.added"] * 3
    assert replayed[:2] == ["item_u1", "item_a1"]
    decision_item = seen[3][1]["item"]
    assert decision_item["kind"] == "decision" and decision_item["meta"]["policies"] == ["returns@3"]
    assert names[4] == "decision" and seen[4][1]["decision"]["policies"] == ["returns@3"]
    # the viewer gets the answer and its grounding, not tool results (account data)
    assert seen[4][1]["decision"]["tools"] == ["getUserAccountInfo"]
    assert "+15555550123" not in json.dumps(seen)
    # live: the hold line and the update arrived, then heartbeats, then the end
    live_items = [(n, d["item"]["id"]) for n, d in seen[5:] if n.startswith("item.")]
    assert live_items == [("item.added", "hold_1"), ("item.updated", "item_a1")]
    assert "comment" in names
    assert names[-2:] == ["call.meta", "call.ended"]
    assert seen[-2][1]["status"] == "ended"


async def test_an_ended_call_is_replayed_and_closed(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc: RunningService = await start_service(make_settings())
    history = svc.services.history
    call_id = "CA" + "1" * 32
    await history.start_call(call_id, transport="twilio")
    await history.add_item(call_id, HistoryItem(id="item_1", kind="message", role="user", text="Hi"))
    await history.set_meta(call_id, status="ended")
    async with aiohttp.ClientSession() as http, http.get(events_url(svc, call_id)) as resp:
        async with asyncio.timeout(5):
            seen = [e async for e in sse_events(resp)]
    assert [n for n, _ in seen] == ["call.meta", "item.added", "call.ended"]
    assert seen[1][1]["item"]["text"] == "Hi"


async def test_call_ids_are_validated(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc: RunningService = await start_service(make_settings())
    async with aiohttp.ClientSession() as http:
        for bad in ("a%7Db", "x:y", "a*", "z" * 65):
            async with http.get(svc.url + f"/calls/{bad}/events") as resp:
                assert resp.status == 400, bad
        async with http.get(events_url(svc, "ws_nosuchcall")) as resp:
            assert resp.status == 404


async def test_open_streams_do_not_hold_up_shutdown(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc: RunningService = await start_service(make_settings())
    call_id = "ws_shutdown1"
    await svc.services.history.start_call(call_id, transport="websocket")
    async with aiohttp.ClientSession() as http, http.get(events_url(svc, call_id)) as resp:
        events = sse_events(resp)
        assert (await anext(events))[0] == "call.meta"  # the viewer is attached
        loop = asyncio.get_running_loop()
        started = loop.time()
        await svc.server.close()
        assert loop.time() - started < 5  # not aiohttp's 60 s shutdown timeout
        rest: list[str] = []
        with contextlib.suppress(aiohttp.ClientError):
            rest = [name async for name, _ in events]
        assert "call.ended" not in rest  # the call goes on: the viewer reconnects elsewhere


async def test_a_transcript_needs_its_own_view_token_or_the_admin_token(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc: RunningService = await start_service(make_settings(admin_token="ops-secret-token"))
    history = svc.services.history
    for call_id in ("ws_private1", "ws_private2"):
        await history.start_call(call_id, transport="websocket")
        await history.set_meta(call_id, status="ended")
    url = svc.url + "/calls/ws_private1/events"
    other = svc.services.view_token("ws_private2")
    async with aiohttp.ClientSession() as http:
        for query in ("", "?token=", f"?token={other}", "?token=ops-secret-token"):
            async with http.get(url + query) as resp:
                assert resp.status == 401, query
        async with http.get(url, headers={"Authorization": "Bearer ops-secret-token"}) as resp:
            assert resp.status == 200
        async with http.get(events_url(svc, "ws_private1")) as resp:
            assert resp.status == 200
