"""The publish gate: a policy change is tested against what callers ask before it goes live.

Publishing ``id@N`` makes a new live set: the published policies with ``id`` replaced by
``N``'s content (an import: with every changed published file in place). The gate runs the
suite — the latest stored suites, or the ones being imported — on that *candidate* set and
on the *live* set, and compares case by case:

* **newly failing**: passes live, fails with the change — these block the publish;
* **newly passing**: fails live, passes with the change (a fix, or a case written for it);
* **unchanged**: passes on both; **still failing**: fails on both (not this change's doing).

The outcome is a :class:`~supervisor.suite_record.GateRecord`, stored with the version it
lets through. An editor may publish in spite of new failures only with a written reason,
which the record keeps with their name (the editor and ``policies publish --force --reason``).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from typing import TypeVar

from supervisor.policies import PolicyDocument
from supervisor.policy_store import PolicyStore
from supervisor.policy_tests.cases import SuiteCase
from supervisor.policy_tests.runner import SuiteReport, SuiteRunner, searchable
from supervisor.policy_tests.store import SuiteStore
from supervisor.suite_record import MIN_REASON_CHARS, GateRecord

__all__ = ["MIN_REASON_CHARS", "PublishGate", "compare", "publish_candidate", "run_gate", "with_changes"]

_V = TypeVar("_V")


def with_changes(live: Sequence[PolicyDocument], changed: Sequence[PolicyDocument]) -> list[PolicyDocument]:
    """The live set with ``changed`` documents in place of (or beside) theirs."""
    ids = {d.id for d in changed}
    return sorted([*(d for d in live if d.id not in ids), *changed], key=lambda d: d.id)


async def publish_candidate(
    store: PolicyStore, policy_id: str, version: int
) -> tuple[list[PolicyDocument], list[PolicyDocument]]:
    """The live set and the set publishing ``policy_id@version`` would make live."""
    live = await store.documents("published")
    doc = (await store.get_version(policy_id, version)).document()
    return live, with_changes(live, [doc.model_copy(update={"status": "published"})])


def compare(live: SuiteReport, candidate: SuiteReport) -> GateRecord:
    before = live.by_id()
    newly_failing, still_failing, newly_passing, unchanged = [], [], [], 0
    for case in candidate.cases:
        was = before.get(case.id)
        passed_before = was is not None and was.passed
        if case.passed and passed_before:
            unchanged += 1
        elif case.passed:
            newly_passing.append(case.id)
        elif passed_before:
            newly_failing.append(case.brief())
        else:
            still_failing.append(case.brief())
    return GateRecord(
        suite=candidate.suite,
        policies=candidate.policies,
        total=candidate.total,
        passed=candidate.passed,
        failed=candidate.failed,
        baseline_passed=sum(c.passed for c in live.cases),
        newly_failing=newly_failing,
        newly_passing=newly_passing,
        still_failing=still_failing,
        unchanged=unchanged,
        repeat=candidate.repeat,
        model=candidate.model,
        simulator=candidate.simulator,
        wall_s=round(max(live.wall_s, candidate.wall_s), 3),
    )


async def run_gate(
    runner: SuiteRunner,
    cases: Sequence[SuiteCase],
    live: Sequence[PolicyDocument],
    candidate: Sequence[PolicyDocument],
    *,
    suite: dict[str, int],
    repeat: int = 1,
    live_report: SuiteReport | None = None,
) -> tuple[GateRecord, SuiteReport, SuiteReport]:
    """Run the suite on both sets (at once) and compare; ``live_report``: a run to reuse."""
    runs = [runner.run(cases, searchable(candidate), target="candidate", suite=suite, repeat=repeat)]
    if live_report is None:
        runs.append(runner.run(cases, searchable(live), target="published", suite=suite, repeat=repeat))
    reports = await asyncio.gather(*runs)
    candidate_report = reports[0]
    live_report = live_report or reports[1]
    return compare(live_report, candidate_report), live_report, candidate_report


class PublishGate:
    """The gate of one service instance: runs the suite for a publish, and remembers recent runs.

    A check and the publish that follows it (the editor checks, shows, then publishes) use
    one run: results are kept per (policy, version, store generation, suite versions), and the
    live set's run per (live set, suite versions). Runs are one at a time per instance.
    """

    def __init__(
        self, store: PolicyStore, suites: SuiteStore, runner: SuiteRunner, *, keep: int = 16
    ) -> None:
        self.store = store
        self.suites = suites
        self.runner = runner
        self.keep = keep
        self._gates: OrderedDict[tuple[object, ...], GateRecord] = OrderedDict()
        self._live: OrderedDict[tuple[object, ...], SuiteReport] = OrderedDict()
        self._lock = asyncio.Lock()

    async def check(self, policy_id: str, version: int) -> GateRecord:
        """The gate record of publishing ``policy_id@version`` now (a copy: callers may annotate it)."""
        async with self._lock:
            suite = await self.suites.versions()
            generation = await self.store.generation()
            key = (policy_id, version, generation, tuple(suite.items()))
            if key in self._gates:
                return self._gates[key].model_copy(deep=True)
            live, candidate = await publish_candidate(self.store, policy_id, version)
            cases = await self.suites.cases()
            live_key = (tuple(d.label() for d in live), tuple(suite.items()))
            record, live_report, _ = await run_gate(
                self.runner, cases, live, candidate, suite=suite, live_report=self._live.get(live_key)
            )
            _remember(self._live, live_key, live_report, self.keep)
            _remember(self._gates, key, record, self.keep)
            return record.model_copy(deep=True)


def _remember(
    cache: OrderedDict[tuple[object, ...], _V], key: tuple[object, ...], value: _V, keep: int
) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > keep:
        cache.popitem(last=False)
