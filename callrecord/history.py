"""Redis-backed conversation history of a call.

Layout (one hash-tagged namespace per call, so every key of a call lives in one Cluster slot):

``{prefix}:call:{<id>}:meta``      hash: transport, caller, started/ended times, status …
``{prefix}:call:{<id>}:order``     list of item ids in **conversation order**
``{prefix}:call:{<id>}:items``     hash item id → item JSON
``{prefix}:call:{<id>}:decisions`` list of Decision JSON, in the order they were made
``{prefix}:call:{<id>}:events``    pub/sub channel: every write is announced here
``{prefix}:calls``                 sorted set of call ids by start time

Items are placed after the item the Realtime server names as ``previous_item_id``; an item
with no known predecessor is appended (the rule: :mod:`callrecord.placement`; here its Lua
twin, ``_ADD_SCRIPT``). Late transcripts and truncation update an item in
place. Every write refreshes the TTL of the call's keys. Reads are one round trip.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from typing import Any, Final, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from redis.asyncio import Redis

from callrecord.decisions import Decision
from callrecord.placement import APPEND, HEAD  # noqa: F401 (HEAD: its callers import both from here)

log = structlog.get_logger("history")

ItemKind = Literal[
    "message", "function_call", "function_call_output", "dtmf", "decision", "hold_line", "action"
]
ItemStatus = Literal["in_progress", "completed", "interrupted", "failed"]

DEFAULT_MAX_ITEMS: Final = 2000  # RESPONDER_MAX_ITEMS_PER_CALL; a long call has a few hundred
CONVERSATION_RESERVE: Final = 0.1  # of the limit, kept for the conversation: key presses stop sooner
CALLER_SIDE_KINDS: Final[frozenset[ItemKind]] = frozenset({"dtmf"})  # items a caller makes at will

# The placement rule inside Redis (one atomic round trip). Its twin in Python is
# callrecord.placement.ConversationOrder.place (the buffered history's local view, the trace
# from a log): change both together; tests/callrecord/test_placement.py checks they agree.
# KEYS: order, items, meta, decisions, side. ARGV: id, body, prev, ttl, channel, announcement,
# limit (a new item is refused, 0 returned, when the call already has that many; 0: no limit)
_CAPACITY_CHECK = """
local limit = tonumber(ARGV[7])
if limit > 0 and redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 and redis.call('LLEN', KEYS[1]) >= limit then
  return 0
end
"""
_PLACE = """
local order, items, side = KEYS[1], KEYS[2], KEYS[5]
local id, body, prev, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
if redis.call('HEXISTS', items, id) == 0 then
  local placed = false
  if prev == '^' then
    redis.call('LPUSH', order, id)
    placed = true
  elseif prev ~= '' then
    local pos = redis.call('LPOS', order, prev)
    if pos then
      -- side items (hold lines, DTMF, decisions) recorded after prev happened before this one
      local pivot = prev
      while true do
        local nxt = redis.call('LINDEX', order, pos + 1)
        if not nxt or redis.call('SISMEMBER', side, nxt) == 0 then
          break
        end
        pivot, pos = nxt, pos + 1
      end
      placed = redis.call('LINSERT', order, 'AFTER', pivot, id) > 0
    end
  else
    redis.call('SADD', side, id)
  end
  if not placed then
    redis.call('RPUSH', order, id)
  end
end
redis.call('HSET', items, id, body)
for i = 1, #KEYS do
  redis.call('EXPIRE', KEYS[i], ttl)
end
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
"""

_ADD_SCRIPT = _CAPACITY_CHECK + _PLACE

# An update, written only if the item is still what was read (a compare-and-set on the one
# field: a concurrent update makes the caller read again), with the TTLs refreshed and the
# update announced in the same round trip. ARGV: id, body read, new body, ttl, channel, message.
# It replaced WATCH / HGET / MULTI…EXEC / PUBLISH: four round trips and ~0.8 ms of the event
# loop's CPU per update (BENCHMARKS.md, issue 15).
_UPDATE_SCRIPT = """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
for i = 1, #KEYS do
  redis.call('EXPIRE', KEYS[i], ARGV[4])
end
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
"""
UPDATE_ATTEMPTS: Final = 20  # reads and compare-and-sets of one update before it gives up
# Items this process last wrote, as stored: an update starts from the copy here instead of
# reading it back (one round trip instead of two). The compare-and-set keeps that correct
# whatever happened meanwhile (another process's write, an expiry): a copy that is not what
# Redis holds fails the compare, and the update reads the item and tries again.
WRITTEN_KEPT: Final = 1024

# A decision: pushed on the decision list (once: a write replayed after a Redis outage, see
# history_buffer.py, must not record it twice; ARGV[8] is its JSON), then added as an item,
# in one round trip like any item; neither when the call's items are at their limit.
_ADD_DECISION_SCRIPT = (
    _CAPACITY_CHECK
    + """
if not redis.call('LPOS', KEYS[4], ARGV[8]) then
  redis.call('RPUSH', KEYS[4], ARGV[8])
end
"""
    + _PLACE
)

_GET_SCRIPT = """
local limit = tonumber(ARGV[1])
local ids
if limit > 0 then
  ids = redis.call('LRANGE', KEYS[1], -limit, -1)
else
  ids = redis.call('LRANGE', KEYS[1], 0, -1)
end
local out = {}
for i = 1, #ids, 1000 do
  local batch = redis.call('HMGET', KEYS[2], unpack(ids, i, math.min(i + 999, #ids)))
  for j = 1, #batch do
    if batch[j] then
      out[#out + 1] = batch[j]
    end
  end
end
-- one JSON array: one reply to read and one validation call instead of one per item
return '[' .. table.concat(out, ',') .. ']'
"""



class HistoryItem(BaseModel):
    """One entry of a call's history.

    ``tool_call_id`` is stored (Redis, pub/sub, HTTP and trace JSON) as ``call_id``, the name
    the Realtime API gives it: items dump by alias, and ``call_id=`` still builds one."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    id: str
    kind: ItemKind
    role: Literal["user", "assistant", "system"] | None = None
    text: str | None = None
    status: ItemStatus = "completed"
    name: str | None = None
    tool_call_id: str | None = Field(
        default=None, alias="call_id", description="a tool call's id (the Realtime API's call_id)"
    )
    arguments: str | None = None
    output: str | None = None
    audio_end_ms: int | None = None
    full_text: str | None = Field(default=None, description="generated text before a truncation")
    created_at: float = Field(default_factory=time.time)
    meta: dict[str, Any] = Field(default_factory=dict)


_ITEMS: TypeAdapter[list[HistoryItem]] = TypeAdapter(list[HistoryItem])


class CallHistory:
    """A call's record. ``max_items`` bounds how many items one call keeps (0: no bound):
    past it, new items are refused (:meth:`add_item` answers False) and the call goes on.
    Key presses are refused :data:`CONVERSATION_RESERVE` of it earlier, so that a caller
    pressing keys without end cannot crowd the conversation out of its own record."""

    def __init__(
        self, redis: Redis, prefix: str = "rt", ttl_s: int = 7 * 24 * 3600, max_items: int = DEFAULT_MAX_ITEMS
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.max_items = max_items
        self._add = redis.register_script(_ADD_SCRIPT)
        self._get = redis.register_script(_GET_SCRIPT)
        self._add_decision = redis.register_script(_ADD_DECISION_SCRIPT)
        self._update = redis.register_script(_UPDATE_SCRIPT)
        self._written: OrderedDict[tuple[str, str], bytes] = OrderedDict()

    # -- keys ----------------------------------------------------------------------------
    def key(self, call_id: str, part: str) -> str:
        return f"{self.prefix}:call:{{{call_id}}}:{part}"

    def _keys(self, call_id: str) -> list[str]:
        return [self.key(call_id, p) for p in ("order", "items", "meta", "decisions", "side")]

    def channel(self, call_id: str) -> str:
        return self.key(call_id, "events")

    # -- meta ----------------------------------------------------------------------------
    async def start_call(self, call_id: str, **meta: str | float | int) -> None:
        now = time.time()
        fields = {"call_id": call_id, "started_at": now, "status": "active", **meta}
        calls = f"{self.prefix}:calls"
        # not one transaction: the call's keys and the index live in different Cluster slots
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.key(call_id, "meta"), mapping={k: str(v) for k, v in fields.items()})
            pipe.expire(self.key(call_id, "meta"), self.ttl_s)
            pipe.zadd(calls, {call_id: now})
            pipe.zremrangebyscore(calls, "-inf", now - self.ttl_s)  # calls whose keys expired
            await pipe.execute()
        await self._announce(call_id, {"type": "call.started", **fields})

    async def set_meta(self, call_id: str, **fields: str | float | int) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.key(call_id, "meta"), mapping={k: str(v) for k, v in fields.items()})
            pipe.expire(self.key(call_id, "meta"), self.ttl_s)
            await pipe.execute()
        await self._announce(call_id, {"type": "call.meta", **fields})

    async def get_meta(self, call_id: str) -> dict[str, str]:
        raw = await self.redis.hgetall(self.key(call_id, "meta"))
        return {_s(k): _s(v) for k, v in raw.items()}

    async def recent_calls(self, limit: int = 50) -> list[str]:
        ids = await self.redis.zrevrange(f"{self.prefix}:calls", 0, limit - 1)
        return [_s(i) for i in ids]

    # -- items ---------------------------------------------------------------------------
    def item_limit(self, kind: ItemKind) -> int:
        """How many items a call may have for a new item of ``kind`` to be recorded (0: any)."""
        if kind in CALLER_SIDE_KINDS:
            return max(1, self.max_items - int(self.max_items * CONVERSATION_RESERVE))
        return self.max_items

    async def add_item(
        self, call_id: str, item: HistoryItem, previous_item_id: str | None = APPEND
    ) -> bool | None:
        """Record ``item`` after ``previous_item_id`` (``APPEND``: at the end, ``HEAD``: first);
        False when the call is at its item limit (:meth:`item_limit`) and it was refused."""
        body = item.model_dump_json()
        where = previous_item_id or APPEND
        args = [item.id, body, where, self.ttl_s, self.channel(call_id), _announcement(body)]
        added = bool(await self._add(keys=self._keys(call_id), args=[*args, self.item_limit(item.kind)]))
        if added:
            self._keep(call_id, item.id, body)
        return added

    async def update_item(self, call_id: str, item_id: str, **fields: Any) -> HistoryItem | None:
        """Update fields of an item in place; returns the new item, or None if it is unknown.
        One script that writes only if nothing changed it, after a read of the item unless this
        process wrote it last (:data:`WRITTEN_KEPT`)."""
        items_key = self.key(call_id, "items")
        raw = self._written.pop((call_id, item_id), None)
        for _ in range(UPDATE_ATTEMPTS):
            if raw is None:
                raw = await self.redis.hget(items_key, item_id)
                if raw is None:
                    return None
            item = HistoryItem.model_validate_json(raw).model_copy(update=fields)
            body = item.model_dump_json()
            message = '{"type": "item.updated", "item": ' + body + "}"
            args = [item_id, raw, body, self.ttl_s, self.channel(call_id), message]
            if await self._update(keys=self._keys(call_id), args=args):
                self._keep(call_id, item_id, body)
                return item
            raw = None  # not what Redis holds (any more): read it
        raise RuntimeError(f"could not update item {item_id}: too much contention")

    def _keep(self, call_id: str, item_id: str, body: str) -> None:
        written = self._written
        written[(call_id, item_id)] = body.encode()
        while len(written) > WRITTEN_KEPT:
            written.popitem(last=False)

    async def get_item(self, call_id: str, item_id: str) -> HistoryItem | None:
        raw = await self.redis.hget(self.key(call_id, "items"), item_id)
        return None if raw is None else HistoryItem.model_validate_json(raw)

    async def get_items(self, call_id: str, limit: int | None = None) -> list[HistoryItem]:
        """The call's items in conversation order (the newest ``limit`` when given), one round trip."""
        keys = [self.key(call_id, "order"), self.key(call_id, "items")]
        return _ITEMS.validate_json(await self._get(keys=keys, args=[limit or 0]))

    # -- decisions -----------------------------------------------------------------------
    async def add_decision(self, call_id: str, decision: Decision) -> None:
        """Store a decision on the call: in the decision list and as a history item (idempotent)."""
        item = decision_item(decision)
        body = item.model_dump_json()
        args = [item.id, body, APPEND, self.ttl_s, self.channel(call_id), _announcement(body)]
        limit = self.item_limit(item.kind)
        await self._add_decision(keys=self._keys(call_id), args=[*args, limit, decision.model_dump_json()])

    async def get_decisions(self, call_id: str) -> list[Decision]:
        raws = await self.redis.lrange(self.key(call_id, "decisions"), 0, -1)
        return [Decision.model_validate_json(r) for r in raws]

    # -- pub/sub -------------------------------------------------------------------------
    async def _announce(self, call_id: str, payload: dict[str, Any]) -> None:
        await self.redis.publish(self.channel(call_id), json.dumps(payload, default=str))


def decision_item(decision: Decision) -> HistoryItem:
    """How a decision appears in the call's history."""
    return HistoryItem(
        id=decision.decision_id,
        kind="decision",
        role="system",
        text=decision.text,
        status="completed" if decision.outcome == "ok" else "failed",
        meta={
            "outcome": decision.outcome,
            "policies": decision.policy_labels(),
            "user_item_id": decision.user_item_id,
            "latency_ms": round(decision.latency_ms, 1),
        },
    )


def _announcement(item_json: str) -> str:
    """The pub/sub message of a new item (its JSON spliced in, not parsed and dumped again)."""
    return '{"type": "item.added", "item": ' + item_json + "}"


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
