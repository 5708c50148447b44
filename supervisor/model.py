"""The supervisor's text model: one small interface over the ``openai`` SDK.

:class:`ModelClient` is what the agent needs: ``complete(instructions, messages, tools)``
returns one :class:`ModelTurn` (text and/or tool calls, token usage). :class:`OpenAIModelClient`
implements it in two modes:

* ``responses`` (default): ``client.responses.create`` with ``instructions``, an ``input``
  item list and function tools, ``store=False``; tool calls come back as ``function_call``
  output items and go back in as ``function_call`` + ``function_call_output`` input items.
* ``chat``: ``client.chat.completions.create`` for OpenAI-compatible servers (Azure, vLLM,
  Ollama); instructions become the system message, tool calls travel as ``tool_calls`` and
  results as ``role: tool`` messages.

Every provider-specific conversion lives in this module.

Both go through the SDK's ``client.post`` with the request body as built here, not through
``responses.create``/``chat.completions.create``: those first walk the whole body against the
parameter TypedDicts (``async_maybe_transform``), synchronously, which took 20 ms of event
loop per model call at 60 history items and 60 ms at 200, stalling every call's audio on the
process. The bodies are plain JSON with the API's own key names, for which that walk changes
nothing (a test checks it against the installed SDK); the reply is parsed into the SDK's
``Response``/``ChatCompletion`` as before, with the SDK's errors, headers and timeouts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import openai
import structlog
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from supervisor.retry import Backoff, remaining_s, retry_after_s, retryable_status
from supervisor.tools import ToolSpec

log = structlog.get_logger("supervisor")

Api = Literal["responses", "chat"]


class ModelError(Exception):
    """The text model could not be reached or returned an error."""


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


class ModelClient(Protocol):
    async def complete(
        self, instructions: str, messages: Sequence[Item], tools: Sequence[ToolSpec]
    ) -> ModelTurn: ...


class OpenAIModelClient:
    """:class:`ModelClient` over the ``openai`` SDK (Responses API or chat completions)."""

    def __init__(
        self,
        client: AsyncOpenAI,
        model: str,
        api: Api = "responses",
        *,
        max_output_tokens: int | None = None,
        temperature: float | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        if api not in ("responses", "chat"):
            raise ValueError(f"unknown api mode {api!r}; expected 'responses' or 'chat'")
        self.client = client
        self.model = model
        self.api: Api = api
        self.max_output_tokens = max_output_tokens
        self.temperature = temperature
        # 429/5xx/connection retries are ours (bounded by the supervisor deadline); the SDK's
        # own are off (see create)
        self.backoff = backoff or Backoff(attempts=1)

    @classmethod
    def create(
        cls,
        *,
        model: str,
        api_key: str,
        base_url: str | None = None,
        api: Api = "responses",
        timeout_s: float = 30.0,
        max_retries: int = 1,
        **options: Any,
    ) -> OpenAIModelClient:
        """``max_retries``: retries of a 429, 5xx or connection error, with backoff and jitter,
        honouring Retry-After, never past the supervisor deadline. The SDK's own retries are
        off: they honour Retry-After but not our deadline, and would sleep into it."""
        client = AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0)
        options.setdefault("backoff", Backoff(attempts=max(max_retries, 0) + 1))
        return cls(client, model, api, **options)

    async def complete(
        self, instructions: str, messages: Sequence[Item], tools: Sequence[ToolSpec]
    ) -> ModelTurn:
        attempt = 1
        while True:
            try:
                if self.api == "chat":
                    return await self._chat(instructions, messages, tools)
                return await self._responses(instructions, messages, tools)
            except openai.APIStatusError as exc:
                error = ModelError(f"HTTP {exc.status_code}: {_error_message(exc)}")
                status: int | None = exc.status_code
                retry = retryable_status(status)
                wait = self.backoff.next_delay(attempt, retry_after_s(exc.response.headers), remaining_s())
                if not retry or wait is None:
                    raise error from exc
            except openai.APIConnectionError as exc:  # refused, reset, timed out
                error, status = ModelError(f"{type(exc).__name__}: {exc}"), None
                wait = self.backoff.next_delay(attempt, None, remaining_s())
                if wait is None:
                    raise error from exc
            except openai.APIError as exc:  # unparseable replies: another try would not help
                raise ModelError(f"{type(exc).__name__}: {exc}") from exc
            log.warning(
                "supervisor.model_retry", status=status, attempt=attempt, delay_ms=round(wait * 1000, 1),
                error=str(error)[:200],
            )  # fmt: skip
            await asyncio.sleep(wait)
            attempt += 1

    async def aclose(self) -> None:
        await self.client.close()

    def warm_up(self) -> None:
        """Build the SDK's reply models now: they build lazily, tens of ms on first use mid-call."""
        reply_type, sample = (
            (ChatCompletion, _CHAT_SAMPLE) if self.api == "chat" else (Response, _RESPONSE_SAMPLE)
        )
        reply_type.model_validate(sample)
        try:  # the SDK parses replies with construct_type, which keeps caches of its own
            from openai._models import construct_type
        except ImportError:  # pragma: no cover - private helper moved
            return
        construct_type(type_=reply_type, value=sample)

    def request_body(
        self, instructions: str, messages: Sequence[Item], tools: Sequence[ToolSpec]
    ) -> dict[str, Any]:
        """The JSON body of one model request, in the API's own key names (module docstring)."""
        body: dict[str, Any] = {"model": self.model}
        if self.api == "chat":
            body["messages"] = to_chat_messages(instructions, messages)
            if tools:
                body["tools"] = [chat_tool(t) for t in tools]
            if self.max_output_tokens is not None:
                body["max_completion_tokens"] = self.max_output_tokens
        else:
            body.update(instructions=instructions, input=to_responses_input(messages), store=False)
            if tools:
                body["tools"] = [responses_tool(t) for t in tools]
            if self.max_output_tokens is not None:
                body["max_output_tokens"] = self.max_output_tokens
        if self.temperature is not None:
            body["temperature"] = self.temperature
        return body

    # -- Responses API ------------------------------------------------------------------------
    async def _responses(
        self, instructions: str, messages: Sequence[Item], tools: Sequence[ToolSpec]
    ) -> ModelTurn:
        body = self.request_body(instructions, messages, tools)
        response = await self.client.post("/responses", body=body, cast_to=Response)
        text: list[str] = []
        calls: list[ToolCall] = []
        for item in response.output:
            if item.type == "function_call":
                calls.append(ToolCall(id=item.call_id, name=item.name, arguments=item.arguments))
            elif item.type == "message":
                text.extend(part.text for part in item.content if part.type == "output_text")
        usage = response.usage
        return ModelTurn(
            text="".join(text).strip(),
            tool_calls=calls,
            usage=TurnUsage(usage.input_tokens, usage.output_tokens) if usage else TurnUsage(),
        )

    # -- chat completions ---------------------------------------------------------------------
    async def _chat(
        self, instructions: str, messages: Sequence[Item], tools: Sequence[ToolSpec]
    ) -> ModelTurn:
        body = self.request_body(instructions, messages, tools)
        completion = await self.client.post("/chat/completions", body=body, cast_to=ChatCompletion)
        if not completion.choices:
            raise ModelError("chat completion has no choices")
        message = completion.choices[0].message
        calls = [
            ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments)
            for c in message.tool_calls or []
            if c.type == "function"
        ]
        usage = completion.usage
        return ModelTurn(
            text=(message.content or "").strip(),
            tool_calls=calls,
            usage=TurnUsage(usage.prompt_tokens, usage.completion_tokens) if usage else TurnUsage(),
        )


_RESPONSE_SAMPLE: dict[str, Any] = {
    "id": "warm", "object": "response", "created_at": 0, "model": "warm", "parallel_tool_calls": True,
    "tool_choice": "auto", "tools": [],
    "output": [
        {"type": "function_call", "call_id": "c", "name": "n", "arguments": "{}"},
        {"type": "message", "id": "m", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "ok", "annotations": []}]},
    ],
    "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2,
              "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
              "output_tokens_details": {"reasoning_tokens": 0}},
}  # fmt: skip
_CHAT_SAMPLE: dict[str, Any] = {
    "id": "warm", "object": "chat.completion", "created": 0, "model": "warm",
    "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "ok",
        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "n", "arguments": "{}"}}]}}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}  # fmt: skip


# -- conversions (pure functions, tested directly) ----------------------------------------------


def responses_tool(spec: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "name": spec.name,
        "description": spec.description,
        "parameters": spec.parameters,
        "strict": spec.strict,
    }


def chat_tool(spec: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": spec.name,
            "description": spec.description,
            "parameters": spec.parameters,
            "strict": spec.strict,
        },
    }


def to_responses_input(messages: Sequence[Item]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for m in messages:
        if isinstance(m, Message):
            items.append({"type": "message", "role": m.role, "content": m.content})
        elif isinstance(m, ModelTurn):
            if m.text:
                items.append({"type": "message", "role": "assistant", "content": m.text})
            items.extend(
                {"type": "function_call", "call_id": c.id, "name": c.name, "arguments": c.arguments}
                for c in m.tool_calls
            )
        else:
            items.append({"type": "function_call_output", "call_id": m.call_id, "output": m.output})
    return items


def to_chat_messages(instructions: str, messages: Sequence[Item]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"role": "system", "content": instructions}] if instructions else []
    for m in messages:
        if isinstance(m, Message):
            out.append({"role": m.role, "content": m.content})
        elif isinstance(m, ModelTurn):
            msg: dict[str, Any] = {"role": "assistant", "content": m.text or None}
            if m.tool_calls:
                msg["tool_calls"] = [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in m.tool_calls
                ]
            out.append(msg)
        else:
            out.append({"role": "tool", "tool_call_id": m.call_id, "content": m.output})
    return out


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return exc.message
