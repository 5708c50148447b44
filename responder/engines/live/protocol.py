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
# counted at 3 so that numbers, names and punctuation-heavy text still fit (other scripts:
# estimated_tokens).
CHARS_PER_TOKEN: Final = 3
# what the engine asks the model to say by itself (commentary and thinking appends)
GREETING_COMMENTARY: Final = (
    "The caller has just been connected: greet them now, as your instructions say."
)
HOLD_THINKING: Final = (
    "The lookup for the caller's request is still running; its answer will follow. If the caller "
    'is waiting in silence, tell them in a few words that you are still checking ("{text}"). '
    "Do not answer the question yet."
)

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
    """A conservative estimate of the server's token count (:func:`_units` ÷ 3)."""
    return math.ceil(_units(text) / CHARS_PER_TOKEN)


def _units(text: str) -> int:
    """Thirds of a token: an ASCII character is one, any other three (a Chinese, Japanese or
    Korean character costs OpenAI's tokenizers 0.7-1.5 tokens), one outside the BMP (emoji)
    six."""
    non_ascii = len(text) - len(text.encode("ascii", "ignore"))
    if not non_ascii:
        return len(text)
    astral = len(text.encode("utf-16-le", "surrogatepass")) // 2 - len(text)
    return len(text) + 2 * non_ascii + 3 * astral


# where a sentence ends: . ! ? before whitespace, or a full-width 。！？ (no space follows those)
_SENTENCE_END = re.compile(r"[.!?](?=\s)|[。！？]")
_CLAUSE_END = re.compile(r"[,;:](?=\s)|[，；：、]")


def fit_tokens(text: str, limit: int = MAX_APPEND_TOKENS) -> str:
    """``text`` shortened to fit ``limit`` tokens at a sentence boundary (never mid-sentence);
    a first sentence longer than the whole budget is cut at its last clause that fits."""
    text = text.strip()
    budget = limit * CHARS_PER_TOKEN
    if _units(text) <= budget:
        return text
    cut, used, previous = 0, 0, 0
    for match in _SENTENCE_END.finditer(text):  # linear: each stretch is counted once
        used += _units(text[previous : match.end()])
        previous = match.end()
        if used > budget:
            break
        cut = previous
    if cut:
        return text[:cut].rstrip()
    room = budget - 1  # for the full stop added
    head = text[:room]
    while _units(head) > room:  # shrinks at every step: the text is not all ASCII
        head = head[: len(head) * room // _units(head)]
    cuts = [m.start() for m in _CLAUSE_END.finditer(head)]
    words = head.rsplit(" ", 1)[0] if " " in head else head
    return (head[: cuts[-1]] if cuts else words).rstrip() + "."
