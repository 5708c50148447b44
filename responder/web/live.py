"""Live transcript of a call as Server-Sent Events: ``GET /calls/{call_id}/events``.

The stream is fed from the Redis pub/sub channel every history write is announced on
(:meth:`callrecord.history.CallHistory.channel`), so any instance can serve any call. On
connect it subscribes first, then replays what Redis already holds — the call's meta, its
items in conversation order and its decisions — and then relays live announcements. An item
may therefore arrive twice (replayed and announced); clients key items by id. Comment lines
keep idle connections alive; the stream ends after the call has ended.

Event names are the announcement types: ``call.started``, ``call.meta``, ``item.added``,
``item.updated``, plus ``decision`` (replayed Decision records) and ``call.ended`` (last).
Items carry their kind (``message``, ``hold_line``, ``decision``, ``function_call`` …); a
decision item carries its policies as ``id@version`` labels in ``meta.policies``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web
from redis.asyncio.client import PubSub

from callrecord.decisions import Decision
from responder.runtime.services import SERVICES, Services
from responder.runtime.view_token import check_view_token
from responder.web.trace_routes import admin_allowed

log = structlog.get_logger("live")

# any segment reaches the handler, so that a malformed id gets a clear 400 rather than a 404
EVENTS_PATH = "/calls/{call_id:[^/]+}/events"
HEARTBEAT_S = 15.0
ENDED_STATUSES = frozenset({"ended", "failed"})
PRIVATE_META = frozenset({"caller"})
# Call ids go into Redis key names: nothing that could leave the call's namespace or hash tag.
CALL_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


POLL_S = 1.0  # how often a quiet stream looks up from Redis (shutdown, heartbeat)


@dataclass
class Viewers:
    """The open transcript streams of this instance, so that shutdown can end them."""

    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    closing: bool = False


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
    if not check_view_token(services.view_secret, call_id, token) and not admin_allowed(request):
        raise web.HTTPUnauthorized(text="this call's view token or the admin token is required")
    history = services.history
    if not await history.get_meta(call_id):
        raise web.HTTPNotFound(text="no such call")
    pubsub = services.redis.client.pubsub()
    await pubsub.subscribe(history.channel(call_id))
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache, no-store",
            "X-Accel-Buffering": "no",
        }
    )
    bound = log.bind(call_id=call_id)
    viewers = request.app[VIEWERS]
    task = asyncio.current_task()
    if task is not None:
        viewers.tasks.add(task)
    try:
        await response.prepare(request)
        ended = await _replay(response, services, call_id) or await _relay(response, pubsub, viewers)
        if ended:  # otherwise this instance is shutting down: the browser reconnects elsewhere
            await response.write(sse("call.ended", {"call_id": call_id}))
    except ConnectionError:
        bound.info("live.viewer_left")
    finally:
        viewers.tasks.discard(task)  # type: ignore[arg-type]
        # closing the connection ends the subscription; bounded, as a read torn down by a
        # cancellation can leave it hanging
        with contextlib.suppress(Exception):
            await asyncio.wait_for(pubsub.aclose(), 2.0)
    return response


async def _close_viewers(app: web.Application) -> None:
    """Shutdown: transcript streams would otherwise hold the server until its timeout."""
    viewers = app[VIEWERS]
    viewers.closing = True  # seen within POLL_S even if a Redis read swallows the cancel
    for task in list(viewers.tasks):
        task.cancel()


async def _replay(response: web.StreamResponse, services: Services, call_id: str) -> bool:
    """Send what Redis already holds; True when the call is already over."""
    history = services.history
    meta = await history.get_meta(call_id)
    await response.write(sse("call.meta", _public(meta)))
    for item in await history.get_items(call_id):
        await response.write(sse("item.added", {"type": "item.added", "item": item.model_dump(mode="json")}))
    for decision in await history.get_decisions(call_id):
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


async def _relay(response: web.StreamResponse, pubsub: PubSub, viewers: Viewers) -> bool:
    """Relay announcements until the call ends (True) or the server shuts down (False); a
    comment line whenever it is quiet."""
    loop = asyncio.get_running_loop()
    last_write = loop.time()
    while True:
        poll_s = min(POLL_S, HEARTBEAT_S)
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=poll_s)
        if viewers.closing:
            return False
        if message is None:  # quiet (or a subscription notice)
            if loop.time() - last_write >= HEARTBEAT_S:
                await response.write(b": keep-alive\n\n")
                last_write = loop.time()
            continue
        last_write = loop.time()
        try:
            payload = json.loads(message["data"])
            kind = payload["type"]
        except (ValueError, KeyError, TypeError):
            log.warning("live.announcement_invalid")
            continue
        await response.write(sse(str(kind), _public(payload)))
        if kind == "call.meta" and payload.get("status") in ENDED_STATUSES:
            return True
