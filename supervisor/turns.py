"""The supervisor's conversation with its text model, as plain values: messages, the model's
turns (text, tool calls, token usage) and tool results. Provider-neutral: the conversions to
and from each API's JSON live in :mod:`supervisor.model` and :mod:`supervisor.model_reply`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Message:
    role: Literal["user", "assistant", "system"]
    content: str


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ToolOutput:
    call_id: str
    output: str


@dataclass(frozen=True)
class TurnUsage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class ModelTurn:
    """One model round: the assistant's text and the tool calls it asked for."""

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: TurnUsage = field(default_factory=TurnUsage)


# What a conversation is made of: messages, earlier model turns, and tool results.
Item = Message | ModelTurn | ToolOutput
