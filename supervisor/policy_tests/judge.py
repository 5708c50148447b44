"""A model judge for rubric expectations (``responder policies test --judge``).

The judge is the supervisor's own text model client (the same endpoint and model, so with no
key it is the simulator's text model, whose verdicts are deterministic: see
``simulator/judge.py``). It gets the caller's question, the answer and the rubric as one JSON
object and must reply with JSON: ``{"verdict": "pass" | "fail", "reason": "…"}``. A reply that
is not that, or a model error, is a failed expectation with the reason saying so: an answer
nobody could grade does not pass.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

from supervisor.model import Message, ModelClient, ModelError

JUDGE_INSTRUCTIONS = """\
# Role

You grade one answer that a customer-service assistant of Northwind Outfitters, an outdoor-gear
retailer, gave a caller on the phone. The user message is a JSON object with the caller's
"question", the "answer" they heard and a "rubric": what a correct answer does.

# How to grade

- Judge only against the rubric. Wording may differ; the facts (numbers, amounts, durations,
  conditions) must agree with the rubric, and nothing the rubric rules out may be said.
- "pass" when the answer does everything the rubric asks; otherwise "fail".

# Reply

Only a JSON object, no other text: {"verdict": "pass" or "fail", "reason": "one short sentence"}
"""

Verdict = Literal["pass", "fail"]
_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reason: str
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"


class ModelJudge:
    def __init__(self, model: ModelClient) -> None:
        self.model = model

    async def judge(self, question: str, answer: str, rubric: str) -> Judgement:
        request = json.dumps({"question": question, "answer": answer, "rubric": rubric}, ensure_ascii=False)
        try:
            turn = await self.model.complete(JUDGE_INSTRUCTIONS, [Message("user", request)], [])
        except ModelError as exc:
            return Judgement("fail", f"the judge could not be asked: {exc}")
        verdict, reason = parse_verdict(turn.text)
        return Judgement(verdict, reason, turn.usage.input_tokens, turn.usage.output_tokens)


def parse_verdict(text: str) -> tuple[Verdict, str]:
    """The verdict and reason of a judge's reply; an unreadable reply fails."""
    match = _OBJECT.search(text or "")
    try:
        data = json.loads(match.group(0)) if match else None
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict) or data.get("verdict") not in ("pass", "fail"):
        return "fail", f"the judge's reply is not a verdict: {(text or '')[:120]!r}"
    return data["verdict"], str(data.get("reason") or "")[:300]
