"""The supervisor's tools: a registry plus lookupPolicyDocument, getUserAccountInfo, findNearestStore.

A tool is a name, a description, a strict JSON schema for its parameters and an async
handler. :meth:`ToolRegistry.call` takes the model's raw arguments string, validates it
against the schema and never raises: bad JSON, a missing field or a wrong type comes back
as an error *result* the model can read and recover from.

Account and store data come from pluggable backends (:class:`AccountBackend`,
:class:`StoreBackend`); the defaults read the sample JSON files in ``policies/data``.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog
from pydantic import BaseModel

from callrecord.decisions import PolicyRef
from supervisor.policies import PolicyLibrary

log = structlog.get_logger("supervisor.tools")

DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent / "policies" / "data"

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


class ToolArgumentError(ValueError):
    """The model called a tool with arguments that do not fit its schema."""


@dataclass(frozen=True)
class ToolSpec:
    """What the model is told about a tool (provider-neutral)."""

    name: str
    description: str
    parameters: dict[str, Any]
    strict: bool = True


@dataclass
class ToolResult:
    """What a tool returns: ``output`` goes back to the model, the rest into the Decision."""

    output: str
    ok: bool = True
    policies: list[PolicyRef] = field(default_factory=list)
    arguments: dict[str, Any] | str = field(default_factory=dict)
    ms: float = 0.0
    note: str | None = None  # a short, PII-free summary for the Decision; the output when unset

    def summary(self, limit: int = 200) -> str:
        text = " ".join((self.note or self.output).split())
        return text if len(text) <= limit else text[: limit - 1] + "…"


Handler = Callable[[dict[str, Any]], Awaitable[ToolResult]]


@dataclass(frozen=True)
class Tool:
    spec: ToolSpec
    handler: Handler


def string_params(**fields: str) -> dict[str, Any]:
    """A strict object schema whose properties are all required strings (name → description)."""
    return {
        "type": "object",
        "properties": {name: {"type": "string", "description": desc} for name, desc in fields.items()},
        "required": list(fields),
        "additionalProperties": False,
    }


def validate_arguments(raw: str, schema: dict[str, Any]) -> dict[str, Any]:
    """Parse ``raw`` JSON and check it against a flat object schema; raises ToolArgumentError."""
    try:
        args = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as exc:
        raise ToolArgumentError(f"arguments are not valid JSON: {exc.msg}") from exc
    if not isinstance(args, dict):
        raise ToolArgumentError("arguments must be a JSON object")
    props: dict[str, Any] = schema.get("properties", {})
    missing = [name for name in schema.get("required", []) if name not in args]
    if missing:
        raise ToolArgumentError(f"missing required argument(s): {', '.join(missing)}")
    if schema.get("additionalProperties") is False:
        extra = sorted(set(args) - set(props))
        if extra:
            raise ToolArgumentError(f"unexpected argument(s): {', '.join(extra)}")
    for name, value in args.items():
        expected = props.get(name, {}).get("type")
        types = _JSON_TYPES.get(expected or "")
        if types and (not isinstance(value, types) or (expected != "boolean" and isinstance(value, bool))):
            raise ToolArgumentError(f"argument {name!r} must be a {expected}")
    return args


class ToolRegistry:
    """Named tools; ``call`` validates, runs, times and logs one tool call."""

    def __init__(self, tools: Sequence[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool) -> None:
        if tool.spec.name in self._tools:
            raise ValueError(f"tool {tool.spec.name!r} is already registered")
        self._tools[tool.spec.name] = tool

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def replacing(self, tool: Tool) -> ToolRegistry:
        """A copy of this registry with ``tool`` in place of the tool of the same name."""
        twin = ToolRegistry()
        twin._tools = {**self._tools, tool.spec.name: tool}
        return twin

    def specs(self) -> list[ToolSpec]:
        return [t.spec for t in self._tools.values()]

    async def call(self, name: str, arguments: str) -> ToolResult:
        started = time.perf_counter()
        tool = self._tools.get(name)
        if tool is None:
            result = _error(f"unknown tool {name!r}; available: {', '.join(self._tools)}", arguments)
        else:
            try:
                args = validate_arguments(arguments, tool.spec.parameters)
            except ToolArgumentError as exc:
                result = _error(str(exc), arguments)
            else:
                try:
                    result = await tool.handler(args)
                except Exception as exc:  # a broken backend must not end the call
                    log.exception("supervisor.tool_failed", tool=name)
                    result = _error(f"{name} failed: {type(exc).__name__}", args)
                result.arguments = args
        result.ms = (time.perf_counter() - started) * 1000
        return result


def _error(message: str, arguments: dict[str, Any] | str) -> ToolResult:
    return ToolResult(output=json.dumps({"error": message}), ok=False, arguments=arguments)


def _json(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False)


# -- backends ---------------------------------------------------------------------------------


class Store(BaseModel):
    id: str
    name: str
    address: str
    zip: str
    lat: float
    lon: float
    phone: str
    hours: str


class AccountBackend(Protocol):
    async def get_account(self, phone_e164: str) -> dict[str, Any] | None: ...


class StoreBackend(Protocol):
    async def list_stores(self) -> list[Store]: ...


class JsonAccountBackend:
    """Accounts keyed by E.164 phone number, from a JSON object file."""

    def __init__(self, path: str | Path = DEFAULT_DATA_DIR / "accounts.json") -> None:
        self._accounts: dict[str, dict[str, Any]] = json.loads(Path(path).read_text(encoding="utf-8"))

    async def get_account(self, phone_e164: str) -> dict[str, Any] | None:
        return self._accounts.get(phone_e164)


class JsonStoreBackend:
    """Stores from a JSON array file."""

    def __init__(self, path: str | Path = DEFAULT_DATA_DIR / "stores.json") -> None:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        self._stores = [Store.model_validate(s) for s in raw]

    async def list_stores(self) -> list[Store]:
        return list(self._stores)


# -- argument helpers -------------------------------------------------------------------------


def normalize_phone(text: str, default_country: str = "1") -> str | None:
    """E.164 from a spoken or typed number: digits only, +1 assumed for 10-digit numbers."""
    digits = re.sub(r"\D", "", text)
    if text.strip().startswith("+") and 8 <= len(digits) <= 15:
        return "+" + digits
    if len(digits) == 10:
        return f"+{default_country}{digits}"
    if len(digits) == 11 and digits.startswith(default_country):
        return "+" + digits
    return None


def normalize_zip(text: str) -> str | None:
    """A 5-digit US ZIP code (ZIP+4 is accepted and shortened), or None."""
    match = re.fullmatch(r"\s*(\d{5})(?:\s*-\s*\d{4})?\s*", text)
    return match.group(1) if match else None


def haversine_miles(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    r = 3958.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


def locate_zip(zip_code: str, stores: Sequence[Store]) -> tuple[Store, bool]:
    """Approximate a ZIP's location from the store data (no geocoder needed).

    An exact match on a store's ZIP uses that store's coordinates. Otherwise the store whose
    ZIP shares the longest leading-digit prefix stands in (US ZIPs are assigned regionally,
    so a shared prefix means the same area), ties broken by the smallest numeric difference.
    Returns the anchor store and whether the match was exact.
    """
    for store in stores:
        if store.zip == zip_code:
            return store, True

    def closeness(store: Store) -> tuple[int, int]:
        prefix = next((i for i, (a, b) in enumerate(zip(store.zip, zip_code, strict=True)) if a != b), 5)
        return -prefix, abs(int(store.zip) - int(zip_code))

    return min(stores, key=closeness), False


# -- the tools --------------------------------------------------------------------------------


def policy_lookup_tool(library: PolicyLibrary, k: int = 3) -> Tool:
    async def handler(args: dict[str, Any]) -> ToolResult:
        topic = args["topic"].strip()
        if not topic:
            return _error("topic must not be empty", args)
        hits = library.search(topic, k=k)
        refs: dict[str, PolicyRef] = {}
        for hit in hits:
            refs.setdefault(hit.label(), PolicyRef(id=hit.id, version=hit.version, section=hit.section))
        payload: dict[str, Any] = {"topic": topic, "results": [h.model_dump() for h in hits]}
        if not hits:
            payload["message"] = "No policy document covers this topic."
        note = "; ".join(f"{h.label()} {h.section} ({h.score:g})" for h in hits) or "no matching policy"
        return ToolResult(output=_json(payload), policies=list(refs.values()), note=note)

    spec = ToolSpec(
        name="lookupPolicyDocument",
        description="Search Northwind Outfitters' policy documents. Returns the best-matching "
        "sections, each with the policy id, title, version and text. Call it for any question "
        "about returns, refunds, shipping, warranty, price matching, membership, store pickup, "
        "gift cards or account security.",
        parameters=string_params(topic="The caller's question or the policy topic, in a few words."),
    )
    return Tool(spec, handler)


def account_info_tool(backend: AccountBackend) -> Tool:
    async def handler(args: dict[str, Any]) -> ToolResult:
        phone = normalize_phone(args["phone_number"])
        if phone is None:
            return _error("phone_number must be a 10-digit US number or an E.164 number", args)
        account = await backend.get_account(phone)
        masked = "…" + phone[-4:]
        if account is None:
            message = "No account is registered to this phone number."
            payload = {"found": False, "phone_number": phone, "message": message}
            return ToolResult(_json(payload), note=f"no account for {masked}")
        orders = account.get("orders") or []
        note = f"account found for {masked}: {len(orders)} order(s)"
        return ToolResult(_json({"found": True, "phone_number": phone, "account": account}), note=note)

    spec = ToolSpec(
        name="getUserAccountInfo",
        description="Look up a customer's account (name, membership, orders and their status, "
        "balances) by the phone number on the account. Only after the caller has given the number.",
        parameters=string_params(
            phone_number="The account's phone number, e.g. '+15555550123' or '555-555-0123'."
        ),
    )
    return Tool(spec, handler)


def nearest_store_tool(backend: StoreBackend, limit: int = 3) -> Tool:
    async def handler(args: dict[str, Any]) -> ToolResult:
        zip_code = normalize_zip(args["zip_code"])
        if zip_code is None:
            return _error("zip_code must be a 5-digit US ZIP code", args)
        stores = await backend.list_stores()
        if not stores:
            return _error("no store data available", args)
        anchor, exact = locate_zip(zip_code, stores)
        ranked = sorted(stores, key=lambda s: haversine_miles(anchor.lat, anchor.lon, s.lat, s.lon))
        results = [
            {
                **s.model_dump(exclude={"lat", "lon"}),
                "distance_miles": round(haversine_miles(anchor.lat, anchor.lon, s.lat, s.lon), 1),
            }
            for s in ranked[:limit]
        ]
        note = f"{'near' if not exact else 'at'} {zip_code}: " + ", ".join(
            f"{r['id']} {r['distance_miles']:g} mi" for r in results
        )
        payload = {"zip_code": zip_code, "approximate": not exact, "stores": results}
        return ToolResult(_json(payload), note=note)

    spec = ToolSpec(
        name="findNearestStore",
        description="Find the Northwind Outfitters stores nearest to a US ZIP code, with address, "
        "phone, opening hours and approximate distance.",
        parameters=string_params(zip_code="The caller's 5-digit ZIP code."),
    )
    return Tool(spec, handler)


def default_registry(
    library: PolicyLibrary,
    *,
    accounts: AccountBackend | None = None,
    stores: StoreBackend | None = None,
    data_dir: str | Path = DEFAULT_DATA_DIR,
) -> ToolRegistry:
    """The three standard tools; backends default to the JSON files in ``data_dir``."""
    data = Path(data_dir)
    return ToolRegistry(
        [
            policy_lookup_tool(library),
            account_info_tool(accounts or JsonAccountBackend(data / "accounts.json")),
            nearest_store_tool(stores or JsonStoreBackend(data / "stores.json")),
        ]
    )
