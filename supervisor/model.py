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

Every provider-specific conversion of a request lives in this module; of a reply, in
:mod:`supervisor.model_reply`.

Both go through the SDK's ``client.post`` with the request body as built here, not through
``responses.create``/``chat.completions.create``: those first walk the whole body against the
parameter TypedDicts (``async_maybe_transform``), synchronously, which took 20 ms of event
loop per model call at 60 history items and 60 ms at 200, stalling every call's audio on the
process. The bodies are plain JSON with the API's own key names, for which that walk changes
nothing (a test checks it against the installed SDK). The SDK's errors, headers, timeouts and
authentication apply as with ``*.create``; the reply comes back as the HTTP response and
:mod:`supervisor.model_reply` reads the fields used from its JSON, instead of the SDK building
its whole reply model first.

The SDK's HTTP transport is aiohttp (``DefaultAioHttpClient``, the SDK's own option, with the
SDK's defaults) rather than httpx2's pure-Python one: with the JSON read directly, a model
round trip costs about half the event-loop CPU (``benchmarks/supervisor_http_cost.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Final, Literal, Protocol

import httpx2
import openai
import structlog
from openai import AsyncOpenAI, DefaultAioHttpClient, DefaultAsyncHttpxClient

from supervisor.model_reply import ReplyShapeError, chat_turn, decode, read_capped, responses_turn
from supervisor.retry import Backoff, remaining_s, retry_after_s, retryable_status
from supervisor.tools import ToolSpec
from supervisor.turns import Item, Message, ModelTurn, ToolCall, ToolOutput, TurnUsage

__all__ = [
    "Api", "Item", "Message", "ModelClient", "ModelError", "ModelTurn", "OpenAIModelClient", "ToolCall",
    "ToolOutput", "TurnUsage", "chat_tool", "responses_tool", "to_chat_messages", "to_responses_input",
]  # fmt: skip

log = structlog.get_logger("supervisor")

Api = Literal["responses", "chat"]


class ModelError(Exception):
    """The text model could not be reached or returned an error."""


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
        client = AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0, http_client=http_client(),
        )  # fmt: skip
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
                error, status = ModelError(_connection_failure(exc)), None
                wait = self.backoff.next_delay(attempt, None, remaining_s())
                if wait is None:
                    raise error from exc
            except openai.APIError as exc:  # unparseable replies: another try would not help
                raise ModelError(f"{type(exc).__name__}: {exc}") from exc
            except ReplyShapeError as exc:  # neither would a reply of the wrong shape
                raise ModelError(f"unusable reply: {exc}") from exc
            log.warning(
                "supervisor.model_retry", status=status, attempt=attempt, delay_ms=round(wait * 1000, 1),
                error=str(error)[:200],
            )  # fmt: skip
            await asyncio.sleep(wait)
            attempt += 1

    async def aclose(self) -> None:
        await self.client.close()

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
        return responses_turn(await self._post("/responses", instructions, messages, tools))

    # -- chat completions ---------------------------------------------------------------------
    async def _chat(
        self, instructions: str, messages: Sequence[Item], tools: Sequence[ToolSpec]
    ) -> ModelTurn:
        return chat_turn(await self._post("/chat/completions", instructions, messages, tools))

    async def _post(
        self, path: str, instructions: str, messages: Sequence[Item], tools: Sequence[ToolSpec]
    ) -> dict[str, Any]:
        """The reply's JSON object; the SDK raises its status and connection errors first. The
        body is streamed so that an oversized one is refused as it comes (``read_capped``)."""
        body = self.request_body(instructions, messages, tools)
        reply = await self.client.post(path, body=body, cast_to=httpx2.Response, stream=True)
        try:
            return decode(await read_capped(reply))
        except httpx2.DecodingError as exc:  # a corrupt compressed body: not worth another try
            raise ReplyShapeError(f"reply body could not be decoded ({type(exc).__name__})") from None
        except httpx2.TimeoutException as exc:  # the body stalled: as the SDK's own read would say
            raise openai.APITimeoutError(request=reply.request) from exc
        except httpx2.TransportError as exc:  # cut off: retried like a dropped connection
            cut = f"reply cut off: {exc}"[:200]
            raise openai.APIConnectionError(message=cut, request=reply.request) from exc
        finally:
            await reply.aclose()


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


def http_client() -> httpx2.AsyncClient:
    """The SDK's aiohttp transport, with the SDK's defaults (its httpx2 one when the SDK was
    installed without it); either way error bodies are read only so far (:func:`_bounded_error_body`)."""
    hooks: dict[str, list[Any]] = {"response": [_bounded_error_body]}
    try:
        return DefaultAioHttpClient(event_hooks=hooks)
    except RuntimeError:  # the SDK's stand-in when its aiohttp extra is missing
        return DefaultAsyncHttpxClient(event_hooks=hooks)


MAX_ERROR_BODY_BYTES: Final = 64 * 1024
MAX_ERROR_CHARS: Final = 500  # of a model's error message kept in the decision and its log line


async def _bounded_error_body(response: httpx2.Response) -> None:
    """An error status's body (429, 5xx, 4xx), read here at most MAX_ERROR_BODY_BYTES (inflated)
    and closed: the SDK, which reads an error body whole before it raises, then finds it read
    (``aread`` keeps ``_content``). A successful reply is streamed and capped by ``_post``."""
    if response.status_code < 400 or hasattr(response, "_content"):
        return
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in response.aiter_bytes():
            parts.append(chunk[: MAX_ERROR_BODY_BYTES - size])
            size += len(parts[-1])
            if size >= MAX_ERROR_BODY_BYTES:
                break
    except (httpx2.TransportError, httpx2.DecodingError):
        pass
    finally:
        response._content = b"".join(parts)
        await response.aclose()


def _connection_failure(exc: openai.APIConnectionError) -> str:
    """What went wrong, for the decision record: the aiohttp transport reports every failure to
    connect (refused, unknown host) as a connect timeout, so the cause decides the name."""
    cause: BaseException = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    if isinstance(exc, openai.APITimeoutError) and cause is not exc and not isinstance(cause, TimeoutError):
        return f"APIConnectionError: {type(cause).__name__}: {str(cause)[:200]}"
    return f"{type(exc).__name__}: {exc}"


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:MAX_ERROR_CHARS]
    return exc.message[:MAX_ERROR_CHARS]
