"""Records a call's conversation into Redis, in conversation order, as the engine reports it.

It records the typed events of :mod:`responder.core.engine`, whatever the engine. Items are
placed where the engine says (after the item it names, first, or appended); user transcripts
arrive later and are filled in place. Assistant text is completed when its transcript is
done; an interrupted item keeps what the caller heard. Items the engine does not know about
(hold lines, DTMF, decisions) are appended.

A call's record is bounded (:class:`~callrecord.history.CallHistory` ``max_items``): an item
refused at the limit is counted (``responder_call_items_refused_total``) and logged once per
kind, and the call goes on. Key presses are also held to a rate (:mod:`responder.core.keypad`).

The writes go through the call's :class:`~responder.core.write_lane.WriteLane`: in order,
without holding up the event pump. State the controller reads (the last user item, interrupted and
out-of-band items) is updated at once; a transcript counts as ready once it is in Redis.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

from structlog.typing import FilteringBoundLogger

from callrecord.history import APPEND, CallHistory, HistoryItem, ItemKind
from infra import metrics
from infra.logs import LogBudget
from responder.core.actions import ActionRecord
from responder.core.engine import (
    HOLD_LINE,
    AgentTruncated,
    CallerTranscript,
    CallerTranscriptFailed,
    ConversationItem,
    ItemAdded,
)
from responder.core.keypad import DTMF_BURST, DTMF_RATE_PER_S, key_rate
from responder.core.write_lane import WriteLane

ACTION_WRITE_WAIT_S = 5.0


class TranscriptRecorder:
    def __init__(
        self, call_id: str, history: CallHistory, log: FilteringBoundLogger,
        dtmf_rate_per_s: float = DTMF_RATE_PER_S, dtmf_burst: int = DTMF_BURST,
    ) -> None:  # fmt: skip
        self.call_id = call_id
        self.history = history
        self.log = log
        self.last_user_item: str | None = None
        self.out_of_band: set[str] = set()  # hold-line items: not in the model's conversation
        self.interrupted: set[str] = set()
        self.server_truncated: set[str] = set()  # interrupted by the server (SIP, WebRTC)
        self._transcripts: dict[str, asyncio.Event] = {}
        self._output_anchor: dict[str, str] = {}  # tool call id → decision id to place the output after
        self.lane = WriteLane(call_id, log)
        self.keys = key_rate(dtmf_rate_per_s, dtmf_burst)
        self._keys_log = LogBudget(burst=1, per_s=0.1)  # refused presses: one warning each 10 s
        self._keys_unlogged = 0  # refused since the last warning
        self.refused: dict[ItemKind, int] = {}  # items refused at the call's item limit, by kind

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every write made so far is in Redis (or buffered for it)."""
        return await self.lane.flush(timeout_s)

    # -- transcripts the supervisor waits for ---------------------------------------------
    def transcript_ready(self, item_id: str) -> asyncio.Event:
        return self._transcripts.setdefault(item_id, asyncio.Event())

    def anchor_output(self, tool_call_id: str, decision_id: str) -> None:
        """Show the tool output of ``tool_call_id`` right after the decision that produced it."""
        self._output_anchor[tool_call_id] = decision_id

    def output_anchors(self) -> list[tuple[str, str]]:
        """(hand-over id, decision id) of every answer anchored so far and not yet placed."""
        return list(self._output_anchor.items())

    # -- engine events -----------------------------------------------------------------------
    async def item_added(self, event: ItemAdded) -> None:
        record = self._record_for(event.item)
        if record is None:
            return
        where = event.after
        if record.kind == "function_call_output":
            where = self._output_anchor.pop(record.tool_call_id or "", where)
        ready = record.role == "user" and record.status == "completed"
        self.lane.submit("add_item", lambda: self._add(record, where, ready))
        self.log.info("call.item_added", **_item_fields(record), where=where)

    async def _add(self, record: HistoryItem, where: str, ready: bool) -> None:
        await self._add_bounded(record, where)
        if ready:
            self.transcript_ready(record.id).set()

    async def _add_bounded(self, record: HistoryItem, where: str = APPEND) -> None:
        """Add ``record``; past the call's item limit it is refused: counted, logged once per kind."""
        if await self.history.add_item(self.call_id, record, where) is not False:
            return
        if record.id in self._transcripts:  # a caller turn: its transcript will never be stored
            self.transcript_ready(record.id).set()
        metrics.CALL_ITEMS_REFUSED.labels(kind=record.kind).inc()
        refused = self.refused[record.kind] = self.refused.get(record.kind, 0) + 1
        if refused == 1:
            self.log.warning(
                "call.items_capped", kind=record.kind, item_id=record.id,
                limit=self.history.item_limit(record.kind),
            )  # fmt: skip

    def _record_for(self, item: ConversationItem) -> HistoryItem | None:
        if item.kind == "message" and item.role in ("user", "assistant"):
            if item.role == "user":
                self.last_user_item = item.id
                self.transcript_ready(item.id)  # set once the text is in Redis
            done = item.role == "user" and bool(item.text)
            status = "completed" if done else "in_progress"
            return HistoryItem(id=item.id, kind="message", role=item.role, text=item.text, status=status)
        if item.kind == "function_call":
            return HistoryItem(
                id=item.id, kind="function_call", role="assistant", name=item.name,
                tool_call_id=item.tool_call_id, arguments=item.arguments or None, status="in_progress",
            )  # fmt: skip
        if item.kind == "function_call_output":
            return HistoryItem(
                id=item.id, kind="function_call_output", role="system",
                tool_call_id=item.tool_call_id, output=item.output,
            )  # fmt: skip
        return None

    async def user_transcript(self, event: CallerTranscript) -> None:
        item_id, text = event.item_id, event.text
        self._update_then_ready(item_id, text=text, status="completed")
        self.log.info("call.user_turn", item_id=item_id, text=text)

    async def user_transcript_failed(self, event: CallerTranscriptFailed) -> None:
        self._update_then_ready(event.item_id, status="failed")
        self.log.warning("call.user_transcript_failed", item_id=event.item_id, error=event.error)

    def _update_then_ready(self, item_id: str, **fields: Any) -> None:
        ready = self.transcript_ready(item_id)

        async def write() -> None:
            try:
                await self.history.update_item(self.call_id, item_id, **fields)
            finally:
                ready.set()  # written or not, nobody waits for it any longer

        self.lane.submit("update_item", write)

    def _update(self, item_id: str, **fields: Any) -> None:
        self.lane.submit("update_item", lambda: self.history.update_item(self.call_id, item_id, **fields))

    async def function_call_done(self, item_id: str | None, arguments: str) -> None:
        if item_id:
            self._update(item_id, arguments=arguments, status="completed")

    async def assistant_transcript(self, item_id: str, text: str, purpose: str) -> None:
        if purpose == HOLD_LINE or item_id in self.out_of_band:
            self.out_of_band.add(item_id)
            hold = HistoryItem(id=item_id, kind="hold_line", role="assistant", text=text)
            self.lane.submit("add_item", lambda: self._add_bounded(hold))
            self.log.info("call.hold_line", item_id=item_id, text=text)
            return
        if item_id in self.server_truncated:  # what exactly was heard is not known here
            self._update(item_id, text=text, full_text=text)
            self.log.info(
                "call.assistant_turn", item_id=item_id, text=text, purpose=purpose, interrupted=True
            )
            return
        if item_id in self.interrupted:
            self._update(item_id, full_text=text)
            self.log.info(
                "call.assistant_turn", item_id=item_id, text=text, purpose=purpose, interrupted=True
            )
            return
        self._update(item_id, text=text, status="completed")
        self.log.info("call.assistant_turn", item_id=item_id, text=text, purpose=purpose)

    async def truncated_by_engine(self, event: AgentTruncated) -> None:
        """On SIP and WebRTC the engine cuts the assistant off itself (the audio never passes
        through us); on the phone path it confirms our own truncate, already recorded with the
        heard text."""
        item_id = event.item_id
        if not item_id or item_id in self.interrupted:
            return
        self.interrupted.add(item_id)
        self.server_truncated.add(item_id)
        audio_end_ms = event.audio_end_ms
        self._update(item_id, status="interrupted", audio_end_ms=audio_end_ms)
        self.log.info("call.barge_in", item_id=item_id, audio_end_ms=audio_end_ms, by="server")

    async def interrupted_at(self, item_id: str, heard_ms: int, heard_text: str, full_text: str) -> None:
        self.interrupted.add(item_id)
        self._update(
            item_id, text=heard_text, full_text=full_text or None, status="interrupted", audio_end_ms=heard_ms
        )

    async def action(self, record: ActionRecord) -> None:
        """A call-control action (transfer, hang-up): recorded like a decision."""
        item = HistoryItem(
            id=record.action_id, kind="action", role="system", name=record.action, text=record.line,
            tool_call_id=record.tool_call_id, meta=record.model_dump(mode="json"),
        )  # fmt: skip
        self.lane.submit("add_item", lambda: self._add_bounded(item))
        await self.flush(ACTION_WRITE_WAIT_S)  # the record is in before the call is acted on further
        self.log.info(
            "call.action", action_id=record.action_id, action=record.action, reason=record.reason,
            outcome=record.outcome, target=record.target, error=record.error, ms=record.ms,
            transport=record.transport, line=record.line,
        )  # fmt: skip

    async def dtmf(self, digit: str) -> None:
        self.key_press(digit)

    def key_press(self, digit: str, at: float | None = None) -> bool:
        """Record a key press that arrived at ``at`` (monotonic; now when None), unless it is
        over the call's key rate (:mod:`responder.core.keypad`); False when refused."""
        if not self.keys.allow(at):
            self.keys_refused(1)
            return False
        item = HistoryItem(id=f"dtmf_{time.time_ns()}", kind="dtmf", role="user", text=digit)
        self.lane.submit("add_item", lambda: self._add_bounded(item))
        self.log.info("call.dtmf", digit=digit, item_id=item.id)
        return True

    def keys_refused(self, count: int, reason: Literal["rate", "early_overflow"] = "rate") -> None:
        """``count`` key presses were not recorded: counted; a warning now and then."""
        metrics.DTMF_REFUSED.labels(reason=reason).inc(count)
        self._keys_unlogged += count
        if self._keys_log.allow():
            self.log.warning(
                "call.dtmf_rate_limited", reason=reason, refused=self._keys_unlogged,
                rate_per_s=self.keys.per_s, burst=int(self.keys.burst),
            )  # fmt: skip
            self._keys_unlogged = 0


def _item_fields(record: HistoryItem) -> dict[str, Any]:
    """What ``call.item_added`` logs: enough to rebuild the conversation order from logs alone."""
    fields = {"item_id": record.id, "kind": record.kind, "role": record.role, "text": record.text,
              "name": record.name, "tool_call_id": record.tool_call_id, "output": record.output,
              "arguments": record.arguments, "status": record.status}  # fmt: skip
    return {k: v for k, v in fields.items() if v is not None}
