"""Text-model replies read from their JSON (supervisor/model_reply.py), through the real SDK and
its aiohttp transport against a server that answers whatever a test gives it: the same turn as
the SDK's own reply models give for well-formed replies, a ModelError (never another exception,
never a retry) for malformed ones."""

from __future__ import annotations

import functools
import gzip
import json
import tracemalloc
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from supervisor.model import (
    MAX_ERROR_CHARS,
    Message,
    ModelError,
    ModelTurn,
    OpenAIModelClient,
    ToolCall,
    TurnUsage,
)
from supervisor.model_reply import MAX_REPLY_BYTES, ReplyShapeError, chat_turn, responses_turn

RESPONSE: dict[str, Any] = {
    "id": "resp_1", "object": "response", "created_at": 1.0, "model": "m", "status": "completed",
    "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
    "output": [
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "message", "id": "m1", "role": "assistant", "status": "completed", "content": [
            {"type": "output_text", "text": " Per policy, ", "annotations": []},
            {"type": "refusal", "refusal": "not this part"},
        ]},
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "lookupPolicyDocument",
         "arguments": '{"topic": "tents"}', "status": "completed"},
        {"type": "message", "id": "m2", "role": "assistant", "status": "completed", "content": [
            {"type": "output_text", "text": "60 days é ☃. ", "annotations": []},
        ]},
    ],
    "usage": {"input_tokens": 41, "output_tokens": 7, "total_tokens": 48,
              "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
              "output_tokens_details": {"reasoning_tokens": 0}},
}  # fmt: skip
COMPLETION: dict[str, Any] = {
    "id": "c1", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None, "message": {
        "role": "assistant", "content": " Checking. ",
        "tool_calls": [{"id": "call_2", "type": "function",
                        "function": {"name": "findNearestStore", "arguments": '{"zip_code": "80202"}'}}]}}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
}  # fmt: skip


def sdk_responses_turn(data: dict[str, Any]) -> ModelTurn:
    """What the client read from the SDK's ``Response`` before (the reference)."""
    response = Response.model_validate(data)
    text, calls = [], []
    for item in response.output:
        if item.type == "function_call":
            calls.append(ToolCall(item.call_id, item.name, item.arguments))
        elif item.type == "message":
            text.extend(part.text for part in item.content if part.type == "output_text")
    usage = response.usage
    assert usage is not None
    return ModelTurn("".join(text).strip(), calls, TurnUsage(usage.input_tokens, usage.output_tokens))


def sdk_chat_turn(data: dict[str, Any]) -> ModelTurn:
    completion = ChatCompletion.model_validate(data)
    message = completion.choices[0].message
    calls = [
        ToolCall(c.id, c.function.name, c.function.arguments)
        for c in message.tool_calls or []
        if c.type == "function"
    ]
    usage = completion.usage
    assert usage is not None
    return ModelTurn(
        (message.content or "").strip(), calls, TurnUsage(usage.prompt_tokens, usage.completion_tokens)
    )


def test_well_formed_replies_read_as_the_sdks_models_read_them() -> None:
    assert responses_turn(RESPONSE) == sdk_responses_turn(RESPONSE)
    assert responses_turn(RESPONSE).text == "Per policy, 60 days é ☃."
    assert chat_turn(COMPLETION) == sdk_chat_turn(COMPLETION)
    no_usage = {k: v for k, v in RESPONSE.items() if k != "usage"}
    assert responses_turn(no_usage).usage == TurnUsage()
    plain = {
        **COMPLETION,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": None}}],
    }
    assert chat_turn(plain) == ModelTurn("", [], TurnUsage(12, 3))


@pytest.mark.parametrize(
    ("path", "value"),
    [(["usage", "input_tokens"], "41"), (["usage", "output_tokens"], -1), (["usage", "input_tokens"], None),
     (["usage"], [1, 2])],
)  # fmt: skip
def test_a_bad_token_count_is_taken_as_zero_and_the_answer_kept(path: list[Any], value: Any) -> None:
    """Review finding: the whole answer was refused (the caller heard the fallback) over its accounting."""
    turn = responses_turn(_with(RESPONSE, path, value))
    assert turn.text == "Per policy, 60 days é ☃." and len(turn.tool_calls) == 1
    assert turn.usage in (TurnUsage(0, 7), TurnUsage(41, 0), TurnUsage(0, 0))


def _with(data: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(data))
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


RESPONSES_MALFORMED = [
    _with(RESPONSE, ["output"], {"type": "message"}),
    _with(RESPONSE, ["output", 0], "reasoning"),
    _with(RESPONSE, ["output", 2, "name"], None),
    _with(RESPONSE, ["output", 2, "arguments"], {"topic": "tents"}),
    _with(RESPONSE, ["output", 1, "content"], "text"),
    _with(RESPONSE, ["output", 1, "content", 0, "text"], 7),
    {**RESPONSE, "error": {"message": "upstream overloaded"}},  # an error in a 200 reply
    {**RESPONSE, "status": "failed"},
]
CHAT_MALFORMED = [
    _with(COMPLETION, ["choices"], []),
    _with(COMPLETION, ["choices", 0, "message"], None),
    _with(COMPLETION, ["choices", 0, "message", "content"], ["x"]),
    _with(COMPLETION, ["choices", 0, "message", "tool_calls", 0, "function"], "f"),
    _with(COMPLETION, ["choices", 0, "message", "tool_calls", 0, "id"], 3),
]


@pytest.mark.parametrize("data", RESPONSES_MALFORMED)
def test_malformed_responses_replies_are_refused(data: dict[str, Any]) -> None:
    with pytest.raises(ReplyShapeError):
        responses_turn(data)


@pytest.mark.parametrize("data", CHAT_MALFORMED)
def test_malformed_chat_replies_are_refused(data: dict[str, Any]) -> None:
    with pytest.raises(ReplyShapeError):
        chat_turn(data)


async def serve(bodies: list[bytes]) -> tuple[TestServer, list[str]]:
    seen: list[str] = []

    async def reply(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        await request.read()
        return web.Response(body=bodies[min(len(seen), len(bodies)) - 1], content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/responses", reply)
    app.router.add_post("/v1/chat/completions", reply)
    server = TestServer(app)
    await server.start_server()
    return server, seen


@pytest.mark.parametrize("api", ["responses", "chat"])
async def test_the_client_reads_a_reply_through_the_sdk(api: str) -> None:
    server, seen = await serve([json.dumps(RESPONSE if api == "responses" else COMPLETION).encode()])
    client = OpenAIModelClient.create(
        model="m", api_key="sk-test", base_url=str(server.make_url("/v1")), api=api
    )  # type: ignore[arg-type]
    try:
        turn = await client.complete("Be brief.", [Message("user", "hi")], [])
    finally:
        await client.aclose()
        await server.close()
    assert turn == (sdk_responses_turn(RESPONSE) if api == "responses" else sdk_chat_turn(COMPLETION))
    assert seen == ["Bearer sk-test"]


HOSTILE = [
    b"<html>502 Bad Gateway</html>",
    b'["not", "an", "object"]',
    b"\xff\xfe{}",
    b"[" * 100_000 + b"]" * 100_000,
    json.dumps(RESPONSES_MALFORMED[2]).encode(),
]


@pytest.mark.parametrize("body", HOSTILE, ids=["html", "list", "not-utf8", "deep", "no-name"])
async def test_an_unusable_reply_is_a_model_error_and_not_retried(body: bytes) -> None:
    server, seen = await serve([body])
    client = OpenAIModelClient.create(
        model="m", api_key="sk-test", base_url=str(server.make_url("/v1")), max_retries=3
    )
    try:
        with pytest.raises(ModelError, match="unusable reply"):
            await client.complete("", [Message("user", "hi")], [])
    finally:
        await client.aclose()
        await server.close()
    assert len(seen) == 1


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve_with(handler: Handler) -> tuple[TestServer, list[int]]:
    seen: list[int] = []

    async def reply(request: web.Request) -> web.StreamResponse:
        seen.append(1)
        await request.read()
        return await handler(request)

    app = web.Application()
    app.router.add_post("/v1/responses", reply)
    server = TestServer(app)
    await server.start_server()
    return server, seen


def _padded(size: int) -> bytes:
    """A valid Responses reply padded past ``size`` bytes (a long unused field)."""
    return json.dumps({**RESPONSE, "padding": "0" * size}).encode()


async def _declared(request: web.Request) -> web.StreamResponse:
    return web.Response(body=_padded(MAX_REPLY_BYTES), content_type="application/json")


async def _chunked(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    body = _padded(MAX_REPLY_BYTES)
    for at in range(0, len(body), 65536):
        await response.write(body[at : at + 65536])
    await response.write_eof()
    return response


@functools.cache
def _bomb_body() -> bytes:
    """A gzip body of a JSON reply 16 times the cap, compressed in pieces (~70 KiB on the wire)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # the gzip container
    head = json.dumps(RESPONSE)[:-1].encode() + b', "padding": "'
    parts = [packer.compress(head)]
    zeros = b"0" * (1024 * 1024)
    parts += [packer.compress(zeros) for _ in range(16 * MAX_REPLY_BYTES // len(zeros))]
    return b"".join([*parts, packer.compress(b'"}'), packer.flush()])


async def _bomb(request: web.Request) -> web.StreamResponse:
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    return web.Response(body=_bomb_body(), headers=headers)


async def _corrupt_gzip(request: web.Request) -> web.StreamResponse:
    body = gzip.compress(json.dumps(RESPONSE).encode())[:40] + b"not gzip from here on" * 10
    return web.Response(body=body, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})


async def traced_failure(handler: Handler, match: str, max_retries: int) -> tuple[int, int]:
    """One ``complete`` against ``handler`` that must fail with ``match``: (requests the server
    got, peak bytes traced meanwhile)."""
    _bomb_body()  # built before memory is traced
    server, seen = await serve_with(handler)
    url = str(server.make_url("/v1"))
    client = OpenAIModelClient.create(model="m", api_key="sk-test", base_url=url, max_retries=max_retries)
    tracemalloc.start()
    try:
        with pytest.raises(ModelError, match=match):
            await client.complete("", [Message("user", "hi")], [])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        await client.aclose()
        await server.close()
    return len(seen), peak


BAD_BODIES = [_declared, _chunked, _bomb, _corrupt_gzip]


@pytest.mark.parametrize("handler", BAD_BODIES, ids=["declared", "chunked", "bomb", "corrupt-gzip"])
async def test_an_oversized_or_undecodable_body_is_refused_as_it_comes_not_retried(handler: Handler) -> None:
    requests, peak = await traced_failure(handler, "unusable reply", max_retries=3)
    assert requests == 1
    assert peak < 4 * MAX_REPLY_BYTES  # a bomb is stopped as it inflates, never held whole (16×)


async def test_a_reply_cut_off_mid_body_is_retried_like_a_dropped_connection() -> None:
    bodies = iter([None, json.dumps(RESPONSE).encode()])

    async def handler(request: web.Request) -> web.StreamResponse:
        body = next(bodies)
        if body is not None:
            return web.Response(body=body, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": "5000"})
        await response.prepare(request)
        await response.write(b'{"id": "resp_1", ')  # then the connection goes
        assert request.transport is not None
        request.transport.close()
        return response

    server, seen = await serve_with(handler)
    url = str(server.make_url("/v1"))
    client = OpenAIModelClient.create(model="m", api_key="sk-test", base_url=url, max_retries=3)
    try:
        turn = await client.complete("", [Message("user", "hi")], [])
    finally:
        await client.aclose()
        await server.close()
    assert turn == sdk_responses_turn(RESPONSE) and len(seen) == 2


async def _bomb_503(request: web.Request) -> web.StreamResponse:
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    return web.Response(status=503, body=_bomb_body(), headers=headers)


async def test_an_error_status_body_is_read_only_so_far_on_every_attempt() -> None:
    """The SDK reads an error body whole before it raises: a 503 whose body is a gzip bomb,
    retried, must cost no more memory than a bounded piece of it per attempt."""
    requests, peak = await traced_failure(_bomb_503, "503", max_retries=2)
    assert requests == 3 and peak < 4 * MAX_REPLY_BYTES


async def test_a_huge_error_message_is_cut_before_it_reaches_the_decision() -> None:
    async def refused(request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": {"message": "x" * 60_000}}, status=400)

    server, _ = await serve_with(refused)
    client = OpenAIModelClient.create(model="m", api_key="sk-test", base_url=str(server.make_url("/v1")))
    try:
        with pytest.raises(ModelError) as info:
            await client.complete("", [Message("user", "hi")], [])
    finally:
        await client.aclose()
        await server.close()
    assert "xxxx" in str(info.value) and len(str(info.value)) <= MAX_ERROR_CHARS + 100
