from __future__ import annotations

import json
from typing import Any

import pytest

from supervisor.policies import PolicyLibrary
from supervisor.tools import (
    Store,
    Tool,
    ToolRegistry,
    ToolResult,
    ToolSpec,
    default_registry,
    normalize_phone,
    string_params,
)


@pytest.fixture
def tools(library: PolicyLibrary) -> ToolRegistry:
    return default_registry(library)


async def call(tools: ToolRegistry, name: str, **args: Any) -> tuple[ToolResult, dict[str, Any]]:
    result = await tools.call(name, json.dumps(args))
    return result, json.loads(result.output)


def test_specs_are_strict_json_schemas(tools: ToolRegistry) -> None:
    assert tools.names == ["lookupPolicyDocument", "getUserAccountInfo", "findNearestStore"]
    for spec in tools.specs():
        params = spec.parameters
        assert spec.strict and spec.description
        assert params["type"] == "object" and params["additionalProperties"] is False
        assert params["required"] == list(params["properties"])


async def test_policy_lookup_uses_the_topic(tools: ToolRegistry) -> None:
    tent, tent_out = await call(tools, "lookupPolicyDocument", topic="return a used tent")
    ship, ship_out = await call(tools, "lookupPolicyDocument", topic="expedited shipping cost")
    assert tent.ok and ship.ok
    top = tent_out["results"][0]
    assert (top["id"], top["title"], top["version"]) == ("returns", "Returns and Refunds", 3)
    assert "60 days" in top["text"] and top["section"] and top["score"] > 0
    assert ship_out["results"][0]["id"] == "shipping" and "$14.95" in ship_out["results"][0]["text"]
    assert tent.policies[0].label() == "returns@3"
    assert {p.label() for p in ship.policies} >= {"shipping@2"}
    assert len({p.label() for p in tent.policies}) == len(tent.policies)  # one ref per policy version


async def test_policy_lookup_without_matches(tools: ToolRegistry) -> None:
    result, out = await call(tools, "lookupPolicyDocument", topic="zeppelin xylophone")
    assert result.ok and out["results"] == [] and result.policies == []
    assert "No policy" in out["message"]
    empty, out = await call(tools, "lookupPolicyDocument", topic="   ")
    assert not empty.ok and "topic" in out["error"]


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ("{}", "missing required argument(s): topic"),
        ('{"topic": 42}', "'topic' must be a string"),
        ('{"topic": "returns", "k": 9}', "unexpected argument(s): k"),
    ],
)
async def test_bad_arguments_are_error_results_not_exceptions(
    tools: ToolRegistry, raw: str, error: str
) -> None:
    result = await tools.call("lookupPolicyDocument", raw)
    assert not result.ok
    assert error in json.loads(result.output)["error"]
    assert result.arguments == raw  # the raw text is kept for the decision record


async def test_unknown_tool(tools: ToolRegistry) -> None:
    result = await tools.call("deleteEverything", "{}")
    assert not result.ok and "unknown tool" in json.loads(result.output)["error"]


@pytest.mark.parametrize("spoken", ["+15555550178", "(555) 555-0178", "555.555.0178", "1 555 555 0178"])
async def test_account_lookup_normalizes_the_number(tools: ToolRegistry, spoken: str) -> None:
    result, out = await call(tools, "getUserAccountInfo", phone_number=spoken)
    assert result.ok and out["found"] is True and out["phone_number"] == "+15555550178"
    assert out["account"]["name"] == "Marcus Bell"


async def test_account_lookup_depends_on_the_number(tools: ToolRegistry) -> None:
    found, jordan = await call(tools, "getUserAccountInfo", phone_number="555-555-0123")
    assert found.summary() == "account found for …0123: 2 order(s)"  # no PII in the Decision
    _, priya = await call(tools, "getUserAccountInfo", phone_number="555-555-0145")
    assert jordan["account"]["name"] == "Jordan Rivera" and jordan["account"]["member_tier"] == "Summit Club"
    assert priya["account"]["name"] == "Priya Natarajan"
    missing, out = await call(tools, "getUserAccountInfo", phone_number="555-555-0999")
    assert missing.ok and out == {
        "found": False,
        "phone_number": "+15555550999",
        "message": "No account is registered to this phone number.",
    }
    bad, out = await call(tools, "getUserAccountInfo", phone_number="12345")
    assert not bad.ok and "phone_number" in out["error"]


def test_normalize_phone() -> None:
    assert normalize_phone("+44 20 7946 0958") == "+442079460958"
    assert normalize_phone("555-0123") is None


async def test_nearest_store_by_zip(tools: ToolRegistry) -> None:
    exact, denver = await call(tools, "findNearestStore", zip_code="80202")
    assert exact.ok and denver["approximate"] is False
    assert [s["id"] for s in denver["stores"]] == ["denver", "boulder", "salt-lake"]
    assert denver["stores"][0]["distance_miles"] == 0.0
    assert denver["stores"][1]["distance_miles"] < denver["stores"][2]["distance_miles"]
    assert exact.summary().startswith("at 80202: denver 0 mi, boulder")
    _, pdx = await call(tools, "findNearestStore", zip_code="97210-1234")
    assert pdx["zip_code"] == "97210" and pdx["approximate"] is True
    assert pdx["stores"][0]["id"] == "portland" and pdx["stores"][1]["id"] == "bend"
    _, nc = await call(tools, "findNearestStore", zip_code="28804")
    assert nc["stores"][0]["id"] == "asheville"
    assert {"address", "phone", "hours"} <= set(nc["stores"][0])


@pytest.mark.parametrize("zip_code", ["8020", "abcde", "802021", ""])
async def test_nearest_store_rejects_bad_zip(tools: ToolRegistry, zip_code: str) -> None:
    result, out = await call(tools, "findNearestStore", zip_code=zip_code)
    assert not result.ok and "5-digit" in out["error"]


async def test_backends_are_pluggable(library: PolicyLibrary) -> None:
    class OneAccount:
        async def get_account(self, phone_e164: str) -> dict[str, Any] | None:
            return {"name": "Test Caller"} if phone_e164 == "+12025550100" else None

    class OneStore:
        async def list_stores(self) -> list[Store]:
            return [
                Store(
                    id="x",
                    name="Only Store",
                    address="1 Main St",
                    zip="10001",
                    lat=40.7,
                    lon=-74.0,
                    phone="+12125550100",
                    hours="Daily 9–5",
                )
            ]

    tools = default_registry(library, accounts=OneAccount(), stores=OneStore())
    _, found = await call(tools, "getUserAccountInfo", phone_number="202-555-0100")
    assert found["account"] == {"name": "Test Caller"}
    _, stores = await call(tools, "findNearestStore", zip_code="80202")
    assert [s["id"] for s in stores["stores"]] == ["x"]


async def test_a_failing_handler_becomes_an_error_result() -> None:
    async def broken(args: dict[str, Any]) -> ToolResult:
        raise ConnectionError("backend down")

    registry = ToolRegistry([Tool(ToolSpec("broken", "always fails", string_params(q="query")), broken)])
    result = await registry.call("broken", '{"q": "x"}')
    assert not result.ok and result.arguments == {"q": "x"} and result.ms >= 0
    assert "ConnectionError" in json.loads(result.output)["error"]
    with pytest.raises(ValueError, match="already registered"):
        registry.register(Tool(ToolSpec("broken", "dup", string_params(q="q")), broken))


def test_result_summary_is_bounded() -> None:
    result = ToolResult(output="word " * 100)
    assert len(result.summary()) == 200 and result.summary().endswith("…")
    assert ToolResult(output="short  text").summary() == "short text"
