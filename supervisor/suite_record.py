"""What a publish gate found, as stored on the policy version it let through.

A published version carries the outcome of the policy test suite it was checked with (see
:mod:`supervisor.policy_tests.gate`): which suite versions ran, how many cases passed on the
set it made live, what changed against the set that was live before (newly failing, newly
passing, unchanged), the failing answers, and, when an editor published in spite of new
failures, who did and their written reason. :class:`~supervisor.policy_store.VersionInfo`
holds it as ``tests``, so a policy's history shows it.

Kept apart from the store and the runner so that both can use it without importing each other.
"""

from __future__ import annotations

import time

from pydantic import BaseModel, Field

MAX_ANSWER_CHARS = 600  # a failing answer as stored: enough to read what went wrong
MIN_REASON_CHARS = 10  # publishing over new failures needs a reason someone can read later


class CaseBrief(BaseModel):
    """One case of a gate run that is (newly or still) failing, with its answer."""

    id: str
    file: str = ""
    line: int = 0
    failures: list[str] = Field(default_factory=list)
    answer: str = ""
    cited: list[str] = Field(default_factory=list)
    pass_rate: float = 0.0


class GateRecord(BaseModel):
    """The suite run of one publish (or import): the candidate set against the live one."""

    suite: dict[str, int] = Field(default_factory=dict)  # suite file name → version (0: not stored yet)
    policies: list[str] = Field(default_factory=list)  # the candidate set, id@version
    total: int = 0
    passed: int = 0
    failed: int = 0
    baseline_passed: int = 0  # on the set that was live before
    newly_failing: list[CaseBrief] = Field(default_factory=list)
    newly_passing: list[str] = Field(default_factory=list)
    still_failing: list[CaseBrief] = Field(default_factory=list)
    unchanged: int = 0  # cases that pass on both sets
    repeat: int = 1
    model: str = ""
    simulator: bool = False
    wall_s: float = 0.0
    ran_at: float = Field(default_factory=time.time)
    override_by: str | None = None
    override_reason: str | None = None

    @property
    def blocked(self) -> bool:
        """Publishing would make a case fail that passes on the live set."""
        return bool(self.newly_failing)

    def summary(self) -> str:
        text = f"tests {self.passed}/{self.total} passed"
        if self.newly_failing:
            text += f", {len(self.newly_failing)} newly failing"
        if self.newly_passing:
            text += f", {len(self.newly_passing)} newly passing"
        if self.override_reason:
            text += f"; published anyway by {self.override_by}: {self.override_reason}"
        return text
