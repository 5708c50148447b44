"""Every GPT-Live client event the service sends (primary WebSocket), built in one place.

Shapes follow the ``openai`` SDK's ``openai.types.live`` client events, which the simulator
validates every event against. As for Realtime, caller audio is framed by string
concatenation (:func:`audio_append`), never by building and serialising a dict.
"""

from __future__ import annotations

import math
import re
from typing import Any, Final, Literal, NotRequired, TypedDict

AUDIO_APPEND_PREFIX: Final = '{"type":"session.input_audio.append","audio":"'
AUDIO_APPEND_SUFFIX: Final = '"}'
MAX_APPEND_TOKENS: Final = 500  # commentary, thinking and instructions appends (server limit)
# A conservative estimate of tokens in English speech text: ~4 characters a token on average,
# counted at 3 so that numbers, names and punctuation-heavy text still fit.
CHARS_PER_TOKEN: Final = 3

LiveClientEventType = Literal[
    "session.start", "session.update", "session.input_audio.append", "session.commentary.append",
    "session.thinking.append", "session.close",
]  # fmt: skip


class LiveClientEvent(TypedDict):
    type: LiveClientEventType
    event_id: NotRequired[str]


class SessionStart(LiveClientEvent):
    session: dict[str, Any]


class ContextAppend(LiveClientEvent):
    content: str
    delegation_id: str | None


def session_start(session: dict[str, Any]) -> SessionStart:
    return {"type": "session.start", "session": session}


def commentary_append(content: str, delegation_id: str | None) -> ContextAppend:
    """Speakable context: a delegation's answer (its id), or general context (None)."""
    return {"type": "session.commentary.append", "content": fit_tokens(content),
            "delegation_id": delegation_id}  # fmt: skip


def thinking_append(content: str, delegation_id: str | None) -> ContextAppend:
    """Silent context (progress, restored history); not a secrecy boundary."""
    return {"type": "session.thinking.append", "content": fit_tokens(content),
            "delegation_id": delegation_id}  # fmt: skip


def session_close() -> LiveClientEvent:
    return {"type": "session.close"}


def audio_append(b64_audio: str) -> str:
    """Hot path: the ``session.input_audio.append`` frame, as text."""
    return AUDIO_APPEND_PREFIX + b64_audio + AUDIO_APPEND_SUFFIX


def estimated_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_CLAUSE_END = re.compile(r"[,;:](?=\s)")


def fit_tokens(text: str, limit: int = MAX_APPEND_TOKENS) -> str:
    """``text`` shortened to fit ``limit`` tokens at a sentence boundary (never mid-sentence);
    a first sentence longer than the whole budget is cut at its last clause that fits."""
    text = text.strip()
    budget = limit * CHARS_PER_TOKEN
    if len(text) <= budget:
        return text
    kept = ""
    for sentence in _SENTENCE_END.split(text):
        candidate = f"{kept} {sentence}".strip()
        if len(candidate) > budget:
            break
        kept = candidate
    if kept:
        return kept
    head = text[:budget]
    cuts = [m.start() for m in _CLAUSE_END.finditer(head)]
    return (head[: cuts[-1]] if cuts else head.rsplit(" ", 1)[0]).rstrip() + "."
