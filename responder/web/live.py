"""Live transcript of a call as Server-Sent Events: ``GET /calls/{call_id}/events``.

The stream is fed from the Redis pub/sub channel every history write is announced on
(:meth:`callrecord.history.CallHistory.channel`), so any instance can serve any call. On
connect it subscribes first, then replays what Redis already holds — the call's meta, its
newest ``transcript_replay_items`` items in conversation order (``replay.truncated`` first
when there were more) and its newest decisions — and then relays live announcements. An item
may therefore arrive twice (replayed and announced); clients key items by id. Comment lines
keep idle connections alive; the stream ends after the call has ended.

Streams hold no Redis connection: an instance subscribes once per watched call on one shared
pub/sub connection and fans out in-process (:mod:`responder.web.live_hub`). Streams are
limited per call and per client (``transcript_viewers_per_call`` / ``_per_client``, per
instance): beyond that, 429 with a JSON error and ``Retry-After`` (``live.viewer_refused``).
A viewer that left is noticed within ``POLL_S`` and frees its place.

Event names are the announcement types: ``call.started``, ``call.meta``, ``item.added``,
``item.updated``, plus ``replay.truncated``, ``decision`` (replayed Decision records) and
``call.ended`` (last).
Items carry their kind (``message``, ``hold_line``, ``decision``, ``function_call`` …); a
decision item carries its policies as ``id@version`` labels in ``meta.policies``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from aiohttp import web
from redis.exceptions import RedisError

from callrecord.decisions import Decision
from responder.runtime.client_address import client_address
from responder.runtime.services import SERVICES, Services
from responder.runtime.view_token import check_view_token
from responder.web.live_hub import Feed, FeedLost, LiveHub
from responder.web.trace_routes import admin_allowed

log = structlog.get_logger("live")

# any segment reaches the handler, so that a malformed id gets a clear 400 rather than a 404
EVENTS_PATH = "/calls/{call_id:[^/]+}/events"
HEARTBEAT_S = 15.0
ENDED_STATUSES = frozenset({"ended", "failed"})
PRIVATE_META = frozenset({"caller"})
# Call ids go into Redis key names: nothing that could leave the call's namespace or hash tag.
CALL_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


POLL_S = 1.0  # how often a quiet stream looks up (shutdown, heartbeat, a viewer that left)
RETRY_AFTER_S = 5
# Redis reads of connecting viewers at once (the rest wait): a burst of viewers must not take
# the connection pool that calls write through (redis-py refuses beyond its size, it does not wait)
REPLAY_READS = 8
Limit = Literal["per_call", "per_client"]


@dataclass
class Viewers:
    """The open transcript streams of this instance: their count per call and per client,
    the shared subscription, and their tasks, so that shutdown can end them."""

    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    closing: bool = False
    per_call: Counter[str] = field(default_factory=Counter)
    per_client: Counter[str] = field(default_factory=Counter)
    hub: LiveHub | None = None
    reads: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(REPLAY_READS))

    def full(self, call_id: str, client: str, services: Services) -> Limit | None:
        settings = services.settings
        if self.per_call[call_id] >= settings.transcript_viewers_per_call:
            return "per_call"
        if self.per_client[client] >= settings.transcript_viewers_per_client:
            return "per_client"
        return None

    def enter(self, call_id: str, client: str) -> None:
        self.per_call[call_id] += 1
        self.per_client[client] += 1

    def leave(self, call_id: str, client: str) -> None:
        self.per_call -= Counter({call_id: 1})  # drops counts that reach zero
        self.per_client -= Counter({client: 1})


VIEWERS: web.AppKey[Viewers] = web.AppKey("live_viewers", Viewers)


def add_live_routes(app: web.Application) -> None:
    app[VIEWERS] = Viewers()
    app.on_shutdown.append(_close_viewers)
    app.router.add_get(EVENTS_PATH, call_events)


def sse(event: str, data: dict[str, Any]) -> bytes:
    """One Server-Sent Event (JSON data never contains a raw newline)."""
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n".encode()


async def call_events(request: web.Request) -> web.StreamResponse:
    call_id = request.match_info["call_id"]
    if not CALL_ID.fullmatch(call_id):
        raise web.HTTPBadRequest(text="invalid call id")
    services = request.app[SERVICES]
    token = request.query.get("token", "")
    if not check_view_token(services.view_secret, call_id, token) and not await admin_allowed(request):
        raise web.HTTPUnauthorized(text="this call's view token or the admin token is required")
    viewers, client = request.app[VIEWERS], client_address(request, services.settings)
    limit = viewers.full(call_id, client, services)
    if limit is not None:
        log.warning("live.viewer_refused", call_id=call_id, limit=limit, client=client)
        raise _refusal(web.HTTPTooManyRequests, "too many live transcript streams open: close one",
                       limit=limit)  # fmt: skip
    viewers.enter(call_id, client)
    task = asyncio.current_task()
    if task is not None:
        viewers.tasks.add(task)
    try:
        return await _stream(request, services, viewers, call_id)
    finally:
        viewers.tasks.discard(task)  # type: ignore[arg-type]
        viewers.leave(call_id, client)


async def _stream(
    request: web.Request, services: Services, viewers: Viewers, call_id: str
) -> web.StreamResponse:
    history = services.history
    async with viewers.reads:
        known = bool(await history.get_meta(call_id))
    if not known:
        raise web.HTTPNotFound(text="no such call")
    if viewers.hub is None:
        viewers.hub = LiveHub(services.redis.client)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache, no-store",
            "X-Accel-Buffering": "no",
        }
    )
    bound = log.bind(call_id=call_id)
    try:
        async with viewers.hub.watch(history.channel(call_id)) as feed:
            await response.prepare(request)
            ended = await _replay(response, services, viewers, call_id)
            # not ended: the feed was lost, the viewer left or the instance shuts down (the
            # browser reconnects, here or elsewhere, and gets a fresh replay)
            if ended or await _relay(response, request, feed, viewers):
                await response.write(sse("call.ended", {"call_id": call_id}))
    except ConnectionError:
        bound.info("live.viewer_left")
    except (RedisError, TimeoutError) as exc:
        if response.prepared:
            raise
        bound.warning("live.subscribe_failed", error=type(exc).__name__)
        raise _refusal(web.HTTPServiceUnavailable, "the live transcript is unavailable: try again") from None
    return response


def _refusal(cls: type[web.HTTPException], message: str, **extra: str) -> web.HTTPException:
    return cls(
        text=json.dumps({"error": message, **extra}),
        content_type="application/json",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def _close_viewers(app: web.Application) -> None:
    """Shutdown: transcript streams would otherwise hold the server until its timeout."""
    viewers = app[VIEWERS]
    viewers.closing = True  # seen within POLL_S even if a Redis read swallows the cancel
    for task in list(viewers.tasks):
        task.cancel()
    if viewers.hub is not None:
        await viewers.hub.close()


async def _replay(response: web.StreamResponse, services: Services, viewers: Viewers, call_id: str) -> bool:
    """Send what Redis already holds (read first, then written: a slow viewer holds no read
    slot); True when the call is already over."""
    history, shown = services.history, services.settings.transcript_replay_items
    async with viewers.reads:
        meta = await history.get_meta(call_id)
        items = await history.get_items(call_id, limit=shown + 1)
        decisions = (await history.get_decisions(call_id))[-shown:]
    await response.write(sse("call.meta", _public(meta)))
    if len(items) > shown:  # older items stay in the trace viewer
        await response.write(sse("replay.truncated", {"type": "replay.truncated", "items_shown": shown}))
    for item in items[-shown:]:
        await response.write(sse("item.added", {"type": "item.added", "item": item.model_dump(mode="json")}))
    for decision in decisions:
        await response.write(sse("decision", {"type": "decision", "decision": decision_view(decision)}))
    return meta.get("status") in ENDED_STATUSES


def _public(payload: dict[str, Any]) -> dict[str, Any]:
    """Call fields a viewer does not need (the caller's number) stay out of the stream."""
    return {k: v for k, v in payload.items() if k not in PRIVATE_META}


def decision_view(decision: Decision) -> dict[str, Any]:
    """What a transcript viewer sees of a decision: its answer and grounding, not the tool
    results (account data) or model internals, which stay with the trace tools."""
    return {
        "decision_id": decision.decision_id,
        "user_item_id": decision.user_item_id,
        "outcome": decision.outcome,
        "text": decision.text,
        "policies": decision.policy_labels(),
        "tools": [call.name for call in decision.tool_calls],
        "latency_ms": round(decision.latency_ms, 1),
    }


async def _relay(response: web.StreamResponse, request: web.Request, feed: Feed, viewers: Viewers) -> bool:
    """Relay announcements until the call ends (True), or the feed is lost, the viewer left or
    the server shuts down (False); a comment line whenever it is quiet."""
    loop = asyncio.get_running_loop()
    last_write = loop.time()
    while True:
        try:
            data = await feed.get(min(POLL_S, HEARTBEAT_S))
        except FeedLost:
            return False
        if viewers.closing or request.transport is None or request.transport.is_closing():
            return False
        if data is None:  # quiet
            if loop.time() - last_write >= HEARTBEAT_S:
                await response.write(b": keep-alive\n\n")
                last_write = loop.time()
            continue
        last_write = loop.time()
        try:
            payload = json.loads(data)
            kind = payload["type"]
        except (ValueError, KeyError, TypeError):
            log.warning("live.announcement_invalid")
            continue
        await response.write(sse(str(kind), _public(payload)))
        if kind == "call.meta" and payload.get("status") in ENDED_STATUSES:
            return True
