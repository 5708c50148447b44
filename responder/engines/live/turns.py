"""What the GPT-Live engine keeps of a caller's turn and an agent's utterance, and the field
readers of its server events (a wrong type raises: the engine logs the event and skips it)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

Raw = dict[str, Any]


@dataclass
class CallerTurn:
    item_id: str
    start_ms: float
    last_end_ms: float
    parts: list[str] = field(default_factory=list)
    chars: int = 0
    closed: bool = False
    delegated: bool = False
    offset_ms: float | None = None  # where on the timeline the model delegated it
    recovering: bool = False  # its recovered hand-over is with the supervisor …
    waiting: list[str] = field(default_factory=list)  # … and these delegations wait for its answer
    agent_chars_after: int = 0  # what the agent said after the turn ended

    @property
    def text(self) -> str:
        return "".join(self.parts).strip()


@dataclass
class Utterance:
    item_id: str
    parts: list[str] = field(default_factory=list)
    chars: int = 0
    silent_ms: float = 0.0
    read_at: float = field(default_factory=time.monotonic)  # when its track last gave a chunk


def text_of(raw: Raw, key: str) -> str:
    value = raw.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"{key} is not a string")
    return value


def ms_of(raw: Raw, key: str) -> float:
    value = raw.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value < 0:
        raise ValueError(f"{key} is not a non-negative number")
    try:
        return float(value)
    except OverflowError:  # JSON allows a 400-digit integer
        raise ValueError(f"{key} is out of range") from None


def ms_or(raw: Raw, key: str, default: float | None) -> float | None:
    """A timeline position the engine can do without: ``default`` when absent or invalid."""
    try:
        return ms_of(raw, key) if raw.get(key) is not None else default
    except ValueError:
        return default


def spoken_chars(utterance: Utterance | None) -> int:
    return 0 if utterance is None else len("".join(utterance.parts).strip())
