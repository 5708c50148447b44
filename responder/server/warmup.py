"""Startup warm-up: pay the ``openai`` SDK's first-use costs before the first call, and freeze
the startup heap so that the garbage collector stops walking it.

Measured with ``python -m benchmarks.load.sdk_first_use`` (see BENCHMARKS.md): unwarmed, the
first ``client.webhooks.unwrap`` (SIP incoming call) blocks the event loop for ~130 ms while
the SDK builds its webhook event types, the first realtime connect ~15 ms (lazy imports: anyio's asyncio
backend, ``websockets``). The supervisor posts through ``client.post`` and reads replies from
their JSON (supervisor/model_reply.py): it never touches ``client.responses`` or
``client.chat``, whose lazy imports (~70–100 ms of generic pydantic models) are not warmed, and
not paid, any more; one in-memory round of its own (:func:`warm_up_text_model`) is. And a full
garbage collection of the ~150 000 objects alive after startup takes ~85 ms: a stall that hit
live calls now and then, at random.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import hmac
import json
import secrets
import time

import httpx2
import structlog
from openai import AsyncOpenAI

from supervisor.model import Message, ModelTurn, OpenAIModelClient, ToolCall, ToolOutput
from supervisor.tools import ToolSpec

log = structlog.get_logger("app")


def _signed_sample() -> tuple[str, dict[str, str], str]:
    """A ``realtime.call.incoming`` webhook signed with a throwaway secret (Standard Webhooks)."""
    key = secrets.token_bytes(32)
    secret = "whsec_" + base64.b64encode(key).decode("ascii")
    event = {
        "id": "evt_warmup",
        "object": "event",
        "type": "realtime.call.incoming",
        "created_at": int(time.time()),
        "data": {"call_id": "rtc_warmup", "sip_headers": [{"name": "From", "value": "sip:warmup@invalid"}]},
    }
    body = json.dumps(event)
    webhook_id, timestamp = "msg_warmup", str(int(time.time()))
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(digest).decode("ascii"),
    }
    return body, headers, secret


def warm_up_sdk(client: AsyncOpenAI) -> dict[str, float]:
    """Build what the SDK builds lazily on the service's runtime paths; returns ms per part.

    Never raises: a warm-up that fails (an SDK change) leaves the first call a little slower."""
    timings: dict[str, float] = {}

    def part(name: str, fn: object) -> None:
        started = time.perf_counter()
        try:
            fn()  # type: ignore[operator]
        except Exception as exc:
            log.warning("app.warm_up_failed", part=name, error=repr(exc))
        timings[name] = round((time.perf_counter() - started) * 1000, 1)

    def realtime() -> None:
        # imported or built on the first ``client.realtime.connect`` and first send
        import anyio._backends._asyncio  # noqa: F401  (the SDK asks anyio for the current task)
        import websockets.asyncio.client  # noqa: F401
        from openai.lib import _websocket  # noqa: F401

        _ = client.default_headers  # platform headers: computed once, on first use
        _ = client.realtime.calls

    def webhooks() -> None:
        body, headers, secret = _signed_sample()
        client.webhooks.unwrap(body, headers, secret=secret)

    part("realtime", realtime)
    part("webhooks", webhooks)
    return timings


_TOOL = ToolSpec(
    name="lookup_policy",
    description="warm-up",
    parameters={"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
)


def _reply(request: httpx2.Request) -> httpx2.Response:
    """A realistic reply to the supervisor's request: a tool call and a message, tools echoed."""
    body = json.loads(request.content or b"{}")
    if request.url.path.endswith("/chat/completions"):
        call = {"id": "call_w", "type": "function", "function": {"name": _TOOL.name, "arguments": "{}"}}
        message = {"role": "assistant", "content": "ok", "refusal": None, "tool_calls": [call]}
        return httpx2.Response(200, json={
            "id": "chatcmpl_w", "object": "chat.completion", "created": 0, "model": "warm-up",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None, "message": message}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        })  # fmt: skip
    output = [
        {"type": "function_call", "id": "fc_w", "call_id": "call_w", "name": _TOOL.name,
         "arguments": "{}", "status": "completed"},
        {"type": "message", "id": "msg_w", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "ok", "annotations": []}]},
    ]  # fmt: skip
    return httpx2.Response(200, json={
        "id": "resp_w", "object": "response", "created_at": time.time(), "status": "completed",
        "model": "warm-up", "instructions": body.get("instructions"), "output": output,
        "parallel_tool_calls": True, "tool_choice": "auto", "tools": body.get("tools", []),
        "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2,
                  "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens_details": {"reasoning_tokens": 0}},
    })  # fmt: skip


async def warm_up_text_model(api: str) -> float:
    """One supervisor round (``complete``) against an in-memory reply: the SDK builds its request
    transforms and reply parsers for what the supervisor really sends and gets. Returns ms."""
    started = time.perf_counter()
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(_reply))
    client = AsyncOpenAI(api_key="warm-up", base_url="http://warm-up.invalid/v1", http_client=http)
    model = OpenAIModelClient(client, "warm-up", api)  # type: ignore[arg-type]
    turn = ModelTurn(text="", tool_calls=[ToolCall("call_0", _TOOL.name, "{}")])
    history = [Message("user", "warm-up"), turn, ToolOutput("call_0", "{}")]
    try:
        await model.complete("warm-up", history, [_TOOL])
    except Exception as exc:
        log.warning("app.warm_up_failed", part="text_model", error=repr(exc))
    finally:
        await client.close()
    return round((time.perf_counter() - started) * 1000, 1)


def freeze_heap() -> int:
    """Collect once, then move every object alive now out of the collector's reach; returns
    how many were frozen. Later collections only walk objects created while serving."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
