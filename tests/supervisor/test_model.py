"""The model client against the simulator's text-model double, through the real openai SDK."""

from __future__ import annotations

import json

import aiohttp
import pytest
from openai import AsyncOpenAI

from supervisor.model import (
    Message,
    ModelError,
    ModelTurn,
    OpenAIModelClient,
    ToolCall,
    ToolOutput,
    to_chat_messages,
    to_responses_input,
)
from supervisor.policies import PolicyLibrary
from supervisor.tools import default_registry
from tests.support.supervisor import StartTextModel

QUESTION = "relevantContextFromLastUserMessage: Can I return a used tent? My ZIP is 80202."


def test_conversation_conversions() -> None:
    turn = ModelTurn(text="Checking.", tool_calls=[ToolCall("c1", "lookupPolicyDocument", '{"topic":"x"}')])
    items = [Message("user", "hi"), turn, ToolOutput("c1", '{"results": []}')]
    assert to_responses_input(items) == [
        {"type": "message", "role": "user", "content": "hi"},
        {"type": "message", "role": "assistant", "content": "Checking."},
        {
            "type": "function_call",
            "call_id": "c1",
            "name": "lookupPolicyDocument",
            "arguments": '{"topic":"x"}',
        },
        {"type": "function_call_output", "call_id": "c1", "output": '{"results": []}'},
    ]
    assert to_chat_messages("Be brief.", items) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "lookupPolicyDocument", "arguments": '{"topic":"x"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"results": []}'},
    ]


@pytest.mark.parametrize("api", ["responses", "chat"])
async def test_tool_round_trip_through_the_sdk(
    api: str, start_text_model: StartTextModel, library: PolicyLibrary
) -> None:
    sim = await start_text_model()
    client = OpenAIModelClient.create(model="gpt-test", api_key="sk-test", base_url=sim.base_url, api=api)  # type: ignore[arg-type]
    tools = default_registry(library)
    conversation: list[Message | ModelTurn | ToolOutput] = [Message("user", QUESTION)]

    first = await client.complete("Answer from policy.", conversation, tools.specs())
    assert first.text == ""
    assert [(c.name, json.loads(c.arguments)) for c in first.tool_calls] == [
        ("lookupPolicyDocument", {"topic": "Can I return a used tent? My ZIP is 80202."}),
        ("findNearestStore", {"zip_code": "80202"}),
    ]
    assert first.usage.input_tokens > 0 and first.usage.output_tokens > 0

    conversation.append(first)
    for c in first.tool_calls:
        conversation.append(ToolOutput(c.id, (await tools.call(c.name, c.arguments)).output))
    second = await client.complete("Answer from policy.", conversation, tools.specs())
    assert second.tool_calls == []
    assert "60 days" in second.text and "[policy:returns@3]" in second.text and "**" in second.text
    assert "Denver" in second.text
    await client.aclose()

    first_body, second_body = sim.state.text_requests
    assert first_body["model"] == "gpt-test"
    if api == "responses":
        assert first_body["store"] is False and first_body["instructions"] == "Answer from policy."
        assert first_body["tools"][0]["name"] == "lookupPolicyDocument" and first_body["tools"][0]["strict"]
        assert [i["type"] for i in second_body["input"]] == [
            "message",
            "function_call",
            "function_call",
            "function_call_output",
            "function_call_output",
        ]
    else:
        assert first_body["messages"][0] == {"role": "system", "content": "Answer from policy."}
        assert first_body["tools"][0]["function"]["name"] == "lookupPolicyDocument"
        assert [m["role"] for m in second_body["messages"]] == ["system", "user", "assistant", "tool", "tool"]


async def test_only_offered_tools_are_called(start_text_model: StartTextModel) -> None:
    sim = await start_text_model()
    client = OpenAIModelClient.create(model="m", api_key="sk-test", base_url=sim.base_url)
    turn = await client.complete("", [Message("user", QUESTION)], [])
    assert turn.tool_calls == [] and "couldn't find" in turn.text
    await client.aclose()


async def test_http_errors_become_model_errors(start_text_model: StartTextModel) -> None:
    sim = await start_text_model()
    sdk = AsyncOpenAI(
        api_key="sk-test",
        base_url=sim.base_url,
        max_retries=0,
        default_headers={"Authorization": "Basic bm90LWEta2V5"},
    )
    client = OpenAIModelClient(sdk, "m", "chat")
    with pytest.raises(ModelError, match="HTTP 401: You didn't provide an API key"):
        await client.complete("", [Message("user", "hi")], [])
    await client.aclose()


async def test_double_rejects_missing_auth_and_bad_json(start_text_model: StartTextModel) -> None:
    sim = await start_text_model()
    async with aiohttp.ClientSession() as http:
        for path in ("/v1/responses", "/v1/chat/completions"):
            url = sim.base_url.removesuffix("/v1") + path
            async with http.post(url, json={"model": "m", "input": "hi"}) as resp:
                assert resp.status == 401
                assert (await resp.json())["error"]["code"] == "invalid_api_key"
            async with http.post(url, data="{nope", headers={"Authorization": "Bearer sk-test"}) as resp:
                assert resp.status == 400
                assert (await resp.json())["error"]["type"] == "invalid_request_error"
        assert sim.state.text_requests == []
        auth = {"Authorization": "Bearer sk-test"}
        async with http.post(sim.base_url + "/responses", json={"input": "hi"}, headers=auth) as resp:
            assert resp.status == 400 and "'model'" in (await resp.json())["error"]["message"]


def test_unknown_api_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown api mode"):
        OpenAIModelClient.create(model="m", api_key="k", api="completions")  # type: ignore[arg-type]


@pytest.mark.parametrize("api", ["responses", "chat"])
async def test_request_bodies_are_what_the_sdks_own_transform_would_send(
    api: str, library: PolicyLibrary
) -> None:
    """The client posts its bodies as built (supervisor/model.py docstring); the SDK's
    ``*.create`` would first run them through its param transform. For these bodies that walk
    must change nothing, or posting them directly would send something else."""
    from openai._utils import async_maybe_transform
    from openai.types.chat import completion_create_params
    from openai.types.responses import response_create_params

    client = OpenAIModelClient(
        AsyncOpenAI(api_key="sk-test", base_url="http://127.0.0.1:9"), "gpt-4.1", api,  # type: ignore[arg-type]
        max_output_tokens=300, temperature=0.2,
    )  # fmt: skip
    turn = ModelTurn(text="Checking.", tool_calls=[ToolCall("c1", "lookupPolicyDocument", '{"topic":"x"}')])
    history = [Message("user", "hi é ☃"), turn, ToolOutput("c1", "{}"), Message("assistant", "ok")]
    body = client.request_body("Be brief.", history, default_registry(library).specs())
    params = (
        completion_create_params.CompletionCreateParamsNonStreaming
        if api == "chat"
        else response_create_params.ResponseCreateParamsNonStreaming
    )
    assert await async_maybe_transform(body, params) == body
    assert body["tools"] and (body["messages"] if api == "chat" else body["input"])
    await client.aclose()
