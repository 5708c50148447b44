"""The text-model test double: ``POST /v1/responses`` and ``POST /v1/chat/completions``.

It plays the supervisor's text model deterministically, driven by the scenario:

* The caller's question is the text after ``relevantContextFromLastUserMessage:`` in the
  newest user message that has it, else the newest user message.
* First round (no tool output in the request yet): sleeps the matching scenario turn's
  ``supervisor_delay_s`` (real seconds, not scaled by the speed factor), then asks for tools
  (only those the request offers): ``lookupPolicyDocument`` with the question as ``topic``,
  ``getUserAccountInfo`` when the question holds a phone number, ``findNearestStore`` when
  it holds a 5-digit ZIP code. With no tool to call it answers straight away.
* Later rounds: composes the answer from the tool outputs: the top policy hit's one or two
  sentences that share the most words with the question, with some Markdown and a
  ``[policy:ID@VERSION]`` citation token (so the supervisor's sanitizer has work to do),
  plus a line each for account and store results.

A scenario turn whose ``tool`` is ``escalate_to_human`` or ``end_call``, when the request
offers that tool (the supervisor does on GPT-Live's delegated turns), gets that call on the
first round and a one-line answer after it.

What a grounded supervisor does beyond that, keyed on words like the tool calls above (so
policy test suites, ``responder policies test``, can expect it):

* a question on an out-of-scope topic (medical, legal or investment advice, the weather…:
  ``_OUT_OF_SCOPE``) is declined without tools, and a caller asking for a person or a manager
  is offered a colleague;
* asking for an exception adds the offer of a colleague to the policy answer;
* account details are read out only to a verified caller: the question must hold the
  account's billing ZIP code (the phone number is already there), else the answer asks for
  it; ``findNearestStore`` is called for a ZIP code only when the question has no phone
  number or asks about a store;
* a judge request (a JSON user message with ``rubric`` and ``answer``) gets a deterministic
  verdict, see :mod:`simulator.judge`.

Replies are built as the ``openai`` SDK's own types and validated with ``model_validate``
before they are serialised, so the SDK parses them exactly like real ones.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from typing import Any

from aiohttp import web
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from simulator.judge import is_judge_request, judge_reply
from simulator.state import STATE_KEY, SimulatorState

CONTEXT_LABEL = "relevantContextFromLastUserMessage"
_PHONE = re.compile(r"(?<!\d)(?:\+?1[\s.-]?)?\(?\d{3}\)?[\s.-]?\d{3}[\s.-]?\d{4}(?!\d)")
_ZIP = re.compile(r"(?<![\d-])\d{5}(?![\d-])")
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset("a an and are can do for i if in is it my of on or the to what when with you your".split())
_OUT_OF_SCOPE = re.compile(
    r"\b(medical|medicine|medication|doctor|diagnos\w*|prescription|legal advice|lawyer|attorney|lawsuit"
    r"|invest\w*|stock market|crypto\w*|tax advice|weather|forecast|recipe|lottery|horoscope)\b",
    re.IGNORECASE,
)
_PERSON = re.compile(
    r"\b(speak|talk)\s+(to|with)\s+(a|an|the|your|some)?\s*(real\s+)?"
    r"(person|human|manager|supervisor|representative|someone)\b|\bmanager\b",
    re.IGNORECASE,
)
_EXCEPTION = re.compile(r"\bexception\b", re.IGNORECASE)
_STORE_WORDS = re.compile(r"\b(stores?|locations?|nearest|closest|near me|hours|open|address)\b", re.I)
# a sentence ends at . ! ? before a capital or a digit, but not after "a.m." / "p.m." ("by 1 p.m. Eastern")
_SENTENCE_END = re.compile(r"(?<=[.!?])(?<![ap]\.m\.)\s+(?=[A-Z0-9\"'])")
_ORDER_ID = re.compile(r"\bNW-\d+\b", re.IGNORECASE)
DECLINE_TEXT = (
    "I'm sorry, I can't help with that: I can only help with Northwind Outfitters gear, orders and "
    "store policies. Is there anything about your gear or an order I can help with?"
)
HANDOVER_TEXT = "Of course. I'll connect you with a colleague who can help."
EXCEPTION_LINE = "- An exception is a judgement call: I can connect you with a colleague who can review it."
# the supervisor's call-control tools (offered on GPT-Live's delegated turns): called for a
# scenario turn whose ``tool`` names one, then a short answer (the responder says its own line)
_CALL_CONTROL = {"escalate_to_human": HANDOVER_TEXT, "end_call": "Thanks for calling. Goodbye!"}
_ids = itertools.count(1)


def add_text_model_routes(app: web.Application) -> None:
    app.router.add_post("/v1/responses", _responses)
    app.router.add_post("/v1/chat/completions", _chat_completions)


# -- HTTP -------------------------------------------------------------------------------------


def _error(status: int, message: str, type_: str, code: str | None) -> web.Response:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return web.json_response(body, status=status)


async def _read(request: web.Request, conversation_key: str) -> dict[str, Any] | web.Response:
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer ") or not auth.removeprefix("Bearer ").strip():
        return _error(
            401,
            "You didn't provide an API key (Authorization: Bearer …).",
            "invalid_request_error",
            "invalid_api_key",
        )
    state = request.app[STATE_KEY]
    if state.text_failures:  # a fault the test asked for: rate limit or server error
        return _injected_failure(state, state.text_failures.pop(0))
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(400, "The request body is not valid JSON.", "invalid_request_error", "invalid_json")
    if not isinstance(body, dict):
        return _error(400, "The request body must be a JSON object.", "invalid_request_error", "invalid_json")
    request.app[STATE_KEY].text_requests.append(body)
    shape = (("model", (str,), True), (conversation_key, (list, str), True), ("tools", (list,), False))
    for key, types, required in shape:
        if (required and key not in body) or (key in body and not isinstance(body[key], types)):
            return _error(400, f"Invalid or missing '{key}'.", "invalid_request_error", "invalid_value")
    if body.get("stream"):
        return _error(400, "The simulator does not stream text responses.", "invalid_request_error", None)
    return body


def _injected_failure(state: SimulatorState, status: int) -> web.Response:
    state.text_failures_sent.append(status)
    if status == 429:
        response = _error(429, "Rate limit reached (simulated).", "requests", "rate_limit_exceeded")
    else:
        response = _error(status, "The server had an error (simulated).", "server_error", None)
    if state.text_failure_retry_after is not None:
        response.headers["Retry-After"] = f"{state.text_failure_retry_after:g}"
    return response


async def _responses(request: web.Request) -> web.Response:
    body = await _read(request, "input")
    if isinstance(body, web.Response):
        return body
    raw_input = body.get("input", [])
    items: list[Any] = [{"role": "user", "content": raw_input}] if isinstance(raw_input, str) else raw_input
    user_texts = [_text(i.get("content")) for i in items if isinstance(i, dict) and i.get("role") == "user"]
    names = {
        i.get("call_id"): i.get("name")
        for i in items
        if isinstance(i, dict) and i.get("type") == "function_call"
    }
    outputs = [
        (names.get(i.get("call_id")), str(i.get("output", "")))
        for i in items
        if isinstance(i, dict) and i.get("type") == "function_call_output"
    ]
    tools = [
        t.get("name") for t in body.get("tools", []) if isinstance(t, dict) and t.get("type") == "function"
    ]

    calls, text = await _play(request.app[STATE_KEY], _question(user_texts), tools, outputs)
    n = next(_ids)
    output: list[dict[str, Any]] = [
        {
            "type": "function_call",
            "id": f"fc_sim{n}_{i}",
            "call_id": call_id,
            "name": name,
            "arguments": args,
            "status": "completed",
        }
        for i, (call_id, name, args) in enumerate(calls)
    ]
    if text:
        output.append(
            {
                "type": "message",
                "id": f"msg_sim{n}",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        )
    tokens_in, tokens_out = _estimate(body), _estimate([output])
    response = Response.model_validate(
        {
            "id": f"resp_sim{n}",
            "object": "response",
            "created_at": time.time(),
            "status": "completed",
            "model": body.get("model", "simulator"),
            "instructions": body.get("instructions"),
            "output": output,
            "parallel_tool_calls": True,
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools", []),
            "usage": {
                "input_tokens": tokens_in,
                "output_tokens": tokens_out,
                "total_tokens": tokens_in + tokens_out,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0},
            },
        }
    )
    return web.json_response(response.to_dict(mode="json"))


async def _chat_completions(request: web.Request) -> web.Response:
    body = await _read(request, "messages")
    if isinstance(body, web.Response):
        return body
    messages = [m for m in body.get("messages", []) if isinstance(m, dict)]
    user_texts = [_text(m.get("content")) for m in messages if m.get("role") == "user"]
    names = {
        c.get("id"): (c.get("function") or {}).get("name")
        for m in messages
        if m.get("role") == "assistant"
        for c in m.get("tool_calls") or []
    }
    outputs = [
        (names.get(m.get("tool_call_id")), _text(m.get("content")))
        for m in messages
        if m.get("role") == "tool"
    ]
    tools = [(t.get("function") or {}).get("name") for t in body.get("tools", []) if isinstance(t, dict)]

    calls, text = await _play(request.app[STATE_KEY], _question(user_texts), tools, outputs)
    n = next(_ids)
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
            for call_id, name, args in calls
        ]
    tokens_in, tokens_out = _estimate(body), _estimate(message)
    completion = ChatCompletion.model_validate(
        {
            "id": f"chatcmpl-sim{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "simulator"),
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
            "usage": {
                "prompt_tokens": tokens_in,
                "completion_tokens": tokens_out,
                "total_tokens": tokens_in + tokens_out,
            },
        }
    )
    return web.json_response(completion.to_dict(mode="json"))


# -- behaviour --------------------------------------------------------------------------------

Call = tuple[str, str, str]  # call id, tool name, arguments JSON


async def _play(
    state: SimulatorState, question: str, tools: list[Any], outputs: list[tuple[str | None, str]]
) -> tuple[list[Call], str]:
    """The double's move: tool calls on the first round, an answer once tool outputs are in."""
    judged = is_judge_request(question)
    if judged is not None:
        return [], judge_reply(judged)
    if not outputs:
        turn = state.scenario.turn_for_text(question) if question else None
        if turn is not None and turn.supervisor_delay_s > 0:
            await asyncio.sleep(turn.supervisor_delay_s)
        if _OUT_OF_SCOPE.search(question):
            return [], DECLINE_TEXT
        if turn is not None and turn.tool in _CALL_CONTROL and turn.tool in tools:  # a delegated turn
            return [(f"call_sim{next(_ids)}_0", turn.tool, json.dumps({"reason": question[:200]}))], ""
        if _PERSON.search(question):
            return [], HANDOVER_TEXT
        calls = _first_round_calls(question, tools)
        if calls:
            return calls, ""
    acted = [name for name, _ in outputs if name in _CALL_CONTROL]
    if acted:
        return [], _CALL_CONTROL[acted[0]]
    return [], _compose(question, outputs)


def _first_round_calls(question: str, tools: list[Any]) -> list[Call]:
    wanted: list[tuple[str, dict[str, str]]] = []
    if "lookupPolicyDocument" in tools and question:
        wanted.append(("lookupPolicyDocument", {"topic": question}))
    phone = _PHONE.search(question)
    if "getUserAccountInfo" in tools and phone:
        wanted.append(("getUserAccountInfo", {"phone_number": phone.group(0)}))
    zip_code = _ZIP.search(_PHONE.sub(" ", question))
    wants_store = not phone or _STORE_WORDS.search(question)
    if "findNearestStore" in tools and zip_code and wants_store:
        wanted.append(("findNearestStore", {"zip_code": zip_code.group(0)}))
    n = next(_ids)
    return [(f"call_sim{n}_{i}", name, json.dumps(args)) for i, (name, args) in enumerate(wanted)]


def _compose(question: str, outputs: list[tuple[str | None, str]]) -> str:
    lines: list[str] = []
    policy_line, overlap = "", 0
    for name, raw in outputs:
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if not isinstance(data, dict) or "error" in data:
            continue
        if name == "lookupPolicyDocument" and data.get("results"):
            top = data["results"][0]
            best = _best_sentences(question, top["text"])
            overlap = len(_words(question) & _words(best))
            policy_line = f"- **Per our {top['title']} policy:** {best} [policy:{top['id']}@{top['version']}]"
        elif name == "getUserAccountInfo":
            lines.append(_account_line(question, data))
        elif name == "findNearestStore" and data.get("stores"):
            store = data["stores"][0]
            lines.append(f"- **Nearest store:** {store['name']}, {store['address']}, open {store['hours']}.")
    # beside an account or store answer, a policy hit that barely shares a word is left out
    if policy_line and (not lines or overlap >= 2):
        lines.insert(0, policy_line)
    if not lines:
        return (
            "I couldn't find anything in our policies that covers that. I can connect you with a colleague."
        )
    if _EXCEPTION.search(question):
        lines.append(EXCEPTION_LINE)
    return "\n".join(lines)


def _account_line(question: str, data: dict[str, Any]) -> str:
    """The account's details for a verified caller (billing ZIP code in the question), else a question."""
    if not data.get("found"):
        return "- I couldn't find an account with that phone number."
    account = data.get("account") or {}
    billing_zip = str(account.get("billing_zip") or "")
    given = _ZIP.findall(_PHONE.sub(" ", question))
    if billing_zip not in given:
        if given:
            return "- That ZIP code does not match the account, so I can't share its details."
        return "- To verify your identity, could you tell me the billing ZIP code on the account?"
    orders = account.get("orders") or []
    name, tier = account.get("name", "the caller"), account.get("member_tier", "none")
    line = f"- **Account:** {name}, member tier {tier}."
    asked = {m.upper() for m in _ORDER_ID.findall(question)}
    order = next((o for o in orders if str(o.get("id", "")).upper() in asked), orders[-1] if orders else None)
    if order is not None:
        line += f" Order {order.get('id')} is {order.get('status')}"
        if order.get("estimated_delivery"):
            line += f", expected by {order['estimated_delivery']}"
        if order.get("hold_until"):
            line += f", held until {order['hold_until']}"
        refund = order.get("refund") or {}
        if refund:
            line += f", refunded ${refund.get('amount'):.2f} on {refund.get('issued_on')}"
        line += "."
    return line


def _best_sentences(question: str, text: str, limit: int = 2) -> str:
    words = _words(question)
    sentences = [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]
    ranked = sorted(range(len(sentences)), key=lambda i: (-len(words & _words(sentences[i])), i))
    best = [i for i in ranked[:limit] if words & _words(sentences[i])] or ranked[:1]
    return " ".join(sentences[i] for i in sorted(best))


def _words(text: str) -> set[str]:
    return {w.removesuffix("s") for w in _WORD.findall(text.lower()) if w not in _STOP and w != "s"}


def _question(user_texts: list[str]) -> str:
    for text in reversed(user_texts):
        if CONTEXT_LABEL in text:
            return text.split(CONTEXT_LABEL, 1)[1].lstrip(" :\"'").strip()
    return user_texts[-1].strip() if user_texts else ""


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _estimate(payload: Any) -> int:
    return max(1, len(json.dumps(payload, default=str)) // 4)
