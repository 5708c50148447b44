"""What a new GPT-Live session is told of the call so far, after the previous one dropped."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from callrecord.history import HistoryItem
from responder.core.engine import Restored
from responder.engines.live import protocol
from responder.engines.live.protocol import MAX_APPEND_TOKENS

RESTORE_INTRO: Final = "The connection was restored. The conversation so far, for context:"


def restored_context(items: Sequence[HistoryItem]) -> tuple[str | None, Restored]:
    """The conversation as one silent note (the newest turns that fit one append, the last
    one at least), and what is restored. Hand-overs are reported with those answered, so that
    an answer the dead socket never took is given again (as general commentary: the
    delegation died with its session)."""
    lines = [f"{'Caller' if i.role == 'user' else 'Agent'}: {i.text}" for i in items
             if i.kind == "message" and i.text and i.role in ("user", "assistant")]  # fmt: skip
    handovers = frozenset(i.tool_call_id for i in items if i.kind == "function_call" and i.tool_call_id)
    answered = frozenset(i.tool_call_id for i in items if i.kind == "function_call_output" and i.tool_call_id)
    if not lines:
        return None, Restored(handovers=handovers, answered=answered)
    kept = [lines[-1]]
    for line in reversed(lines[-20:-1]):
        if protocol.estimated_tokens("\n".join([RESTORE_INTRO, line, *kept])) > MAX_APPEND_TOKENS:
            break
        kept.insert(0, line)
    item_ids = frozenset(i.id for i in items if i.kind == "message" and i.text)
    restored = Restored(item_ids=item_ids, handovers=handovers, answered=answered)
    return "\n".join([RESTORE_INTRO, *kept]), restored
