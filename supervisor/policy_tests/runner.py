"""Run policy test cases through the real ``Supervisor.decide`` and check what it answered.

:class:`SuiteRunner` takes the service's supervisor as a template — its model client, its
prompt (inline mode included), its tools and its deadline — and runs every case against a
given :class:`~supervisor.policies.PolicyLibrary` (the files of a directory, the store's
published or draft set, or the set a publish would make live). Each case is a call of its
own: its earlier turns and its question are the call's history (kept in memory, nothing is
written to Redis and no call is listed), the question plus what the caller gave is the
context. Cases run concurrently (bounded), ``repeat`` times each for a pass rate.

A run passes when every expectation holds:

* ``policies``: each id is cited by the answer and was looked up (a verified citation);
* ``facts``: each is stated (:func:`~supervisor.policy_tests.matching.states`);
* ``not_say``: none is said (:func:`~supervisor.policy_tests.matching.says`);
* ``outcome``: what the caller got (:func:`~supervisor.policy_tests.matching.detect_outcome`);
* ``rubric``: the judge says pass (only with a judge; skipped otherwise).
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Literal

import structlog
from pydantic import BaseModel, Field, computed_field

from callrecord.decisions import Decision
from callrecord.history import CallHistory, HistoryItem
from supervisor.agent import Supervisor
from supervisor.policies import PolicyDocument, PolicyLibrary
from supervisor.policy_tests.cases import ExpectedOutcome, SuiteCase
from supervisor.policy_tests.judge import ModelJudge
from supervisor.policy_tests.matching import detect_outcome, says, states
from supervisor.suite_record import MAX_ANSWER_CHARS, CaseBrief

log = structlog.get_logger("policy_tests")

FailureKind = Literal["policies", "fact", "not_say", "outcome", "rubric"]
Progress = Callable[[int, int, int], None]  # runs done, runs in all, runs failed


class Failure(BaseModel):
    kind: FailureKind
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


class JudgeResult(BaseModel):
    verdict: Literal["pass", "fail"]
    reason: str


class RunResult(BaseModel):
    """One run of one case."""

    passed: bool
    failures: list[Failure] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list)
    answer: str = ""
    outcome: ExpectedOutcome = "answer"
    decision_outcome: str = "ok"
    error: str | None = None
    cited: list[str] = Field(default_factory=list)  # verified citations, id@version
    looked_up: list[str] = Field(default_factory=list)
    latency_ms: float = 0.0
    rounds: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    judge: JudgeResult | None = None


class CaseResult(BaseModel):
    id: str
    file: str
    line: int
    question: str
    runs: list[RunResult]
    min_pass_rate: float = 1.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passes(self) -> int:
        return sum(r.passed for r in self.runs)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def pass_rate(self) -> float:
        return round(self.passes / len(self.runs), 4) if self.runs else 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        return bool(self.runs) and self.pass_rate >= self.min_pass_rate

    def first_failure(self) -> RunResult | None:
        return next((r for r in self.runs if not r.passed), None)

    def brief(self) -> CaseBrief:
        run = self.first_failure() or (self.runs[0] if self.runs else RunResult(passed=False))
        return CaseBrief(
            id=self.id,
            file=self.file,
            line=self.line,
            failures=[str(f) for f in run.failures],
            answer=run.answer[:MAX_ANSWER_CHARS],
            cited=run.cited,
            pass_rate=self.pass_rate,
        )


class SuiteReport(BaseModel):
    """Every case's results, and what they ran against."""

    target: str  # what was tested: a directory, "published", "draft", a publish candidate
    policies: list[str]
    suite: dict[str, int] = Field(default_factory=dict)  # suite file → stored version (0: a file)
    model: str = ""
    api: str = ""
    simulator: bool = False
    judge: bool = False
    repeat: int = 1
    concurrency: int = 1
    started_at: float = Field(default_factory=time.time)
    wall_s: float = 0.0
    cases: list[CaseResult] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total(self) -> int:
        return len(self.cases)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> int:
        return sum(c.passed for c in self.cases)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def failed(self) -> int:
        return self.total - self.passed

    @computed_field  # type: ignore[prop-decorator]
    @property
    def latency_ms(self) -> dict[str, float]:
        values = sorted(r.latency_ms for c in self.cases for r in c.runs)
        if not values:
            return {"p50": 0.0, "p95": 0.0, "max": 0.0}
        p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
        return {"p50": round(statistics.median(values), 1), "p95": round(p95, 1), "max": round(values[-1], 1)}

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tokens(self) -> dict[str, int]:
        runs = [r for c in self.cases for r in c.runs]
        return {"input": sum(r.input_tokens for r in runs), "output": sum(r.output_tokens for r in runs)}

    def by_id(self) -> dict[str, CaseResult]:
        return {c.id: c for c in self.cases}


class MemoryHistory(CallHistory):
    """A test case's call, in memory: its turns, and the decisions made on it (never Redis)."""

    def __init__(self) -> None:  # no Redis: only what Supervisor.decide reads and writes
        self.calls: dict[str, list[HistoryItem]] = {}
        self.decisions: dict[str, list[Decision]] = {}

    async def get_items(self, call_id: str, limit: int | None = None) -> list[HistoryItem]:
        items = self.calls.get(call_id, [])
        return list(items[-limit:] if limit else items)

    async def add_decision(self, call_id: str, decision: Decision) -> None:
        self.decisions.setdefault(call_id, []).append(decision)


def case_items(case: SuiteCase) -> list[HistoryItem]:
    """The call so far: the case's earlier turns, then the caller's question."""
    items = [
        HistoryItem(
            id=f"t{i}",
            kind="message",
            role="user" if turn.caller is not None else "assistant",
            text=turn.caller if turn.caller is not None else turn.agent,
        )
        for i, turn in enumerate(case.case.turns)
    ]
    items.append(HistoryItem(id="question", kind="message", role="user", text=case.case.question))
    return items


def searchable(documents: Sequence[PolicyDocument]) -> PolicyLibrary:
    """A library in which every given document is searchable (drafts too: they are under test)."""
    return PolicyLibrary(d.model_copy(update={"status": "published"}) for d in documents)


class SuiteRunner:
    def __init__(
        self,
        supervisor: Supervisor,
        *,
        concurrency: int = 8,
        judge: ModelJudge | None = None,
        simulator: bool = False,
    ) -> None:
        self.supervisor = supervisor
        self.concurrency = max(1, concurrency)
        self.judge = judge
        self.simulator = simulator

    async def run(
        self,
        cases: Sequence[SuiteCase],
        library: PolicyLibrary,
        *,
        target: str,
        suite: dict[str, int] | None = None,
        repeat: int = 1,
        min_pass_rate: float = 1.0,
        progress: Progress | None = None,
    ) -> SuiteReport:
        """Every case ``repeat`` times against ``library``; never raises for a failing answer."""
        started, wall = time.time(), time.perf_counter()
        history = MemoryHistory()
        supervisor = self.supervisor.with_policies(library)
        supervisor.history = history
        run_id = uuid.uuid4().hex[:8]
        gate = asyncio.Semaphore(self.concurrency)
        total, done, failed = len(cases) * max(repeat, 1), 0, 0

        async def one(case: SuiteCase, n: int) -> RunResult:
            nonlocal done, failed
            call_id = f"ptest-{run_id}-{case.id}-{n}"
            history.calls[call_id] = case_items(case)
            async with gate:
                decision = await supervisor.decide(call_id, case.case.context(), user_item_id="question")
                result = await self._check(case, decision)
            history.calls.pop(call_id, None)
            done, failed = done + 1, failed + (not result.passed)
            if progress is not None:
                progress(done, total, failed)
            return result

        runs = await asyncio.gather(*(one(c, n) for c in cases for n in range(max(repeat, 1))))
        results = []
        for i, case in enumerate(cases):
            mine = list(runs[i * max(repeat, 1) : (i + 1) * max(repeat, 1)])
            results.append(
                CaseResult(
                    id=case.id,
                    file=case.file,
                    line=case.line,
                    question=case.case.question,
                    runs=mine,
                    min_pass_rate=min_pass_rate,
                )
            )
        report = SuiteReport(
            target=target,
            policies=library.labels(),
            suite=dict(suite or {}),
            model=self.supervisor.model_name,
            api=self.supervisor.api,
            simulator=self.simulator,
            judge=self.judge is not None,
            repeat=max(repeat, 1),
            concurrency=self.concurrency,
            started_at=started,
            wall_s=round(time.perf_counter() - wall, 3),
            cases=results,
        )
        log.info(
            "policy_tests.finished",
            target=target,
            cases=report.total,
            passed=report.passed,
            failed=report.failed,
            repeat=report.repeat,
            wall_s=report.wall_s,
        )
        return report

    async def _check(self, case: SuiteCase, decision: Decision) -> RunResult:
        expect = case.case.expect
        verified = [c for c in decision.citations if c in decision.policy_labels()]
        failures: list[Failure] = []
        skipped: list[str] = []
        answer = decision.text
        cited_ids = {label.split("@", 1)[0] for label in verified}
        for pid in expect.policies:
            if pid not in cited_ids:
                looked = ", ".join(decision.policy_labels()) or "none"
                failures.append(
                    Failure(kind="policies", message=f"not grounded in {pid} (cited: "
                            f"{', '.join(verified) or 'none'}; looked up: {looked})")
                )  # fmt: skip
        for fact in expect.facts:
            if not states(answer, fact):
                wanted = fact if isinstance(fact, str) else " | ".join(fact)
                failures.append(Failure(kind="fact", message=f"does not state {wanted!r}"))
        for phrase in expect.not_say:
            if says(answer, phrase):
                failures.append(Failure(kind="not_say", message=f"says {phrase!r}"))
        outcome = detect_outcome(answer, decision.outcome)
        if outcome != expect.outcome:
            failures.append(Failure(kind="outcome", message=f"expected {expect.outcome}, got {outcome}"))
        judged: JudgeResult | None = None
        tokens_in, tokens_out = decision.usage.input_tokens, decision.usage.output_tokens
        if expect.rubric:
            if self.judge is None:
                skipped.append("rubric (no judge: --judge)")
            else:
                verdict = await self.judge.judge(case.case.question, answer, expect.rubric)
                judged = JudgeResult(verdict=verdict.verdict, reason=verdict.reason)
                tokens_in, tokens_out = tokens_in + verdict.input_tokens, tokens_out + verdict.output_tokens
                if not verdict.passed:
                    failures.append(Failure(kind="rubric", message=verdict.reason or "the judge says fail"))
        return RunResult(
            passed=not failures,
            failures=failures,
            skipped=skipped,
            answer=answer,
            outcome=outcome,
            decision_outcome=decision.outcome,
            error=decision.error,
            cited=verified,
            looked_up=decision.policy_labels(),
            latency_ms=round(decision.latency_ms, 1),
            rounds=decision.rounds,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            judge=judged,
        )
