"""The text-model double as a **judge** of policy test answers (``responder policies test --judge``).

A judge request is recognised by its content, not by a flag: the newest user message is a JSON
object holding ``rubric`` and ``answer`` (and usually ``question``). The reply is the JSON the
product's judge asks any model for: ``{"verdict": "pass" | "fail", "reason": "…"}``.

The verdict is deterministic, so that tests can pin it:

* every **number** in the rubric (digits, or number words up to the thousands) must appear in
  the answer: numbers are the facts a policy change moves;
* at least 60 % of the rubric's other content words must appear in the answer (lower case,
  a light plural/-ed/-ing strip, stopwords and grading words such as "says" or "mentions" left
  out).

This is word overlap, not understanding: a rubric that says what the answer must *not* do
("does not promise a refund") cannot be judged by it. A real model judges those.
"""

from __future__ import annotations

import json
import re
from typing import Any

PASS_SHARE = 0.6

_WORD = re.compile(r"\d+(?:\.\d+)?|[a-z]+")
_STOP = frozenset(
    """a an and are as at be by can do does for from has have how i if in is it its me my of on or
    our so that the their there this to was we what when where which who will with you your not no
    any all also than then into about after before per each""".split()
)
# words that describe the grading, not the answer
_GRADING = frozenset(
    """answer answers say says said state states stated mention mentions mentioned explain explains
    tell tells told caller customer should must correct correctly clearly politely offer offers
    include includes including give gives""".split()
)
_TENS_WORDS = "twenty thirty forty fifty sixty seventy eighty ninety"
_UNITS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen".split()
    )
}
_TENS = {w: 10 * (i + 2) for i, w in enumerate(_TENS_WORDS.split())}


def is_judge_request(text: str) -> dict[str, Any] | None:
    """The parsed request when ``text`` is a judge request, else None."""
    stripped = text.strip()
    if not stripped.startswith("{"):
        return None
    try:
        data = json.loads(stripped)
    except json.JSONDecodeError:
        return None
    if isinstance(data, dict) and isinstance(data.get("rubric"), str) and isinstance(data.get("answer"), str):
        return data
    return None


def judge_reply(request: dict[str, Any]) -> str:
    """The judge's JSON reply to one request (see the module docstring for the rule)."""
    rubric, answer = _tokens(request["rubric"]), set(_tokens(request["answer"]))
    numbers = [t for t in dict.fromkeys(rubric) if _is_number(t)]
    words = [t for t in dict.fromkeys(rubric) if not _is_number(t)]
    missing_numbers = [n for n in numbers if n not in answer]
    found = [w for w in words if w in answer]
    share = len(found) / len(words) if words else 1.0
    if missing_numbers:
        verdict, reason = "fail", f"the answer does not state {', '.join(missing_numbers)}"
    elif share < PASS_SHARE:
        missing = ", ".join(w for w in words if w not in answer)
        verdict, reason = "fail", f"the answer covers {share:.0%} of the rubric; missing: {missing}"
    else:
        verdict, reason = "pass", f"the answer covers {share:.0%} of the rubric and every number in it"
    return json.dumps({"verdict": verdict, "reason": reason})


def _is_number(token: str) -> bool:
    return token[:1].isdigit()


def _tokens(text: str) -> list[str]:
    raw = _WORD.findall(text.lower().replace("-", " "))
    out: list[str] = []
    pending: int | None = None
    for word in raw:
        value = _UNITS.get(word, _TENS.get(word))
        if value is not None:
            if pending is not None and _joins(pending, value):
                pending += value  # "one hundred twenty", "twenty five"
            else:
                if pending is not None:
                    out.append(str(pending))
                pending = value
            continue
        if word in ("hundred", "thousand") and pending is not None:
            pending *= 100 if word == "hundred" else 1000
            continue
        if pending is not None:
            out.append(str(pending))
            pending = None
        if word in _STOP or word in _GRADING:
            continue
        out.append(word if word[:1].isdigit() else _strip(word))
    if pending is not None:
        out.append(str(pending))
    return out


def _joins(pending: int, value: int) -> bool:
    hundreds = pending >= 100 and pending % 100 == 0
    tens = pending % 100 >= 20 and pending % 10 == 0 and value < 10
    return hundreds or tens


def _strip(word: str) -> str:
    for suffix in ("ing", "ed", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word
