"""Policy test suites: the case schema (file:line), fact matching, the runner through the real
Supervisor.decide against the simulator's text model, the regression it catches, the judge."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from callrecord.history import CallHistory
from supervisor.agent import Supervisor, build_supervisor
from supervisor.model import ModelTurn
from supervisor.policies import PolicyLibrary, load_policies
from supervisor.policy_tests.cases import OUTCOMES, check_suite_dir, check_suite_text, check_suites
from supervisor.policy_tests.gate import compare, with_changes
from supervisor.policy_tests.judge import ModelJudge, parse_verdict
from supervisor.policy_tests.matching import detect_outcome, normalize, says, states
from supervisor.policy_tests.runner import SuiteRunner, searchable
from tests.support.paths import POLICIES_DIR
from tests.support.supervisor import StartTextModel

SUITES = POLICIES_DIR / "tests"
TRAIL_TESTED_60 = "can be returned within 60 days of purchase under the Trail Tested"
# the cases that pin the Trail Tested window: a 30-day draft must fail exactly these
TRAIL_TESTED_CASES = {
    "returns-tent-slept-in",
    "returns-sleeping-bag-used",
    "returns-backpack-trail",
    "returns-tent-after-two-trips",
    "returns-trail-tested-limit",
    "returns-trail-tested-exception",
}


def edited_policies(tmp_path: Path, policy: str, old: str, new: str) -> Path:
    """A copy of the sample policies (data and suites too) with one edit in one policy."""
    copy = tmp_path / "policies"
    shutil.copytree(POLICIES_DIR, copy)
    path = copy / f"{policy}.md"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")
    return copy


async def simulated_supervisor(start_text_model: StartTextModel, history: CallHistory) -> Supervisor:
    sim = await start_text_model()
    return build_supervisor(history, api_key="sk-test", model="gpt-sim", base_url=sim.base_url)


def test_the_sample_suite_is_valid_and_covers_every_policy() -> None:
    docs = load_policies(POLICIES_DIR)
    cases, problems = check_suite_dir(SUITES, {d.id for d in docs})
    assert problems == []
    assert len(cases) >= 40
    covered = {pid for c in cases for pid in c.case.expect.policies}
    assert covered == {d.id for d in docs}
    outcomes = {c.case.expect.outcome for c in cases}
    assert {"answer", "escalate", "decline"} <= outcomes <= set(OUTCOMES)
    assert any(c.case.data and c.case.data.phone for c in cases) and any(c.case.turns for c in cases)


def test_malformed_case_files_are_reported_with_file_and_line() -> None:
    text = """\
cases:
  - id: tent-used
    question: Can I return a tent?
    expect:
      policies: [returns, no-such-policy]
      facts:
        - 60 days
        - []
      outcom: answer
  - id: Not An Id
    question: Hi
    expect:
      outcome: maybe
  - question: no id here
    expect: {}
"""
    _, problems = check_suite_text(text, "returns.yaml")
    assert [(p.line, p.message) for p in problems] == [
        (9, "cases.0.expect.outcom: Extra inputs are not permitted"),
        (10, "cases.1.id: String should match pattern '^[a-z0-9][a-z0-9-]{1,63}$'"),
        (13, "cases.1.expect.outcome: Input should be 'answer', 'escalate', 'decline' or 'fallback'"),
        (14, "cases.2.id: Field required"),
    ]
    assert str(problems[0]) == "returns.yaml:9: cases.0.expect.outcom: Extra inputs are not permitted"
    # bad YAML, aliases, duplicate keys, cross-file rules
    assert [str(p) for p in check_suite_text("cases:\n  - id: a\n   question: [\n", "x.yaml")[1]] == [
        "x.yaml:3: invalid YAML: did not find expected '-' indicator"
    ]
    assert str(check_suite_text("a: &x [1]\nb: *x\n", "x.yaml")[1][0]) == (
        "x.yaml:1: YAML anchors (&name) are not allowed"
    )
    good = "cases:\n  - id: one-case\n    question: Q?\n    expect:\n      facts: [a]\n      facts: [b]\n"
    assert [str(p) for p in check_suite_text(good, "x.yaml")[1]] == ["x.yaml:6: duplicate key 'facts'"]
    ok = "cases:\n  - id: one-case\n    question: Q?\n    expect:\n      policies: [returns, ghost]\n"
    _, problems = check_suites({"one.yaml": ok, "two.yaml": ok, "Bad Name.yaml": "cases: []\n"}, {"returns"})
    assert [str(p) for p in problems] == [
        "Bad Name.yaml:1: name the file <name>.yaml with a name matching ^[a-z0-9][a-z0-9-]{1,63}$",
        "Bad Name.yaml:1: cases: List should have at least 1 item after validation, not 0",
        "one.yaml:5: expect.policies: unknown policy id 'ghost'",
        "two.yaml:2: duplicate case id 'one-case' (also in one.yaml:2)",
    ]


@pytest.mark.parametrize(
    ("answer", "fact", "stated"),
    [
        ("You can return it within thirty days.", "30 days", True),
        ("It costs fourteen dollars and ninety-five cents per order.", "$14.95 per order", True),
        ("Refunds take five to seven business days.", "5–7 business days", True),
        ("A 15% restocking fee applies.", "fifteen percent restocking fee", True),
        ("Orders placed by 1 p.m. Eastern ship today.", "1 PM eastern", True),
        ("Membership is twenty-five dollars a year.", "$25 per year", True),
        ("Members get free prepaid return labels.", "free return labels", True),
        ("THE 60-DAY WINDOW!", "60 day window", True),
        ("It is held until 2025-06-10.", "June 10th", True),
        ("You can return it within 30 days.", "60 days", False),
        ("within 130 days", "30 days", False),
        ("free shipping on returns", "free return labels", False),
    ],
)
def test_facts_match_whatever_the_wording_of_numbers(answer: str, fact: str, stated: bool) -> None:
    assert states(answer, fact) is stated


def test_phrases_not_to_say_match_exactly_and_outcomes_are_read_from_the_answer() -> None:
    assert says("It cannot be returned.", "cannot be returned")
    assert not says("It can be returned.", "cannot be")
    assert not says("cannot, sadly, be returned", "cannot be returned")  # no gap for things not to say
    assert states("Yes, or the 16-digit card number.", ["original receipt", "16-digit card number"])
    assert normalize("$7.95") == normalize("seven dollars and ninety-five cents") == ["7.95", "dollar"]
    assert detect_outcome("I'm sorry, I can't help with that.", "ok") == "decline"
    assert detect_outcome("I can connect you with a colleague.", "ok") == "escalate"
    assert detect_outcome("Let me transfer you to our account security team.", "ok") == "escalate"
    assert detect_outcome("Tents can be returned within 60 days.", "ok") == "answer"
    assert detect_outcome("I can connect you with a colleague.", "timeout") == "fallback"


async def test_the_sample_suite_passes_and_a_30_day_trail_tested_draft_fails_its_cases(
    start_text_model: StartTextModel, history: CallHistory, library: PolicyLibrary, tmp_path: Path
) -> None:
    supervisor = await simulated_supervisor(start_text_model, history)
    runner = SuiteRunner(supervisor, concurrency=8, simulator=True)
    cases, _ = check_suite_dir(SUITES)
    report = await runner.run(cases, searchable(library.documents), target="policies/")
    failing = {c.id: (c.runs[0].failures, c.runs[0].answer) for c in report.cases if not c.passed}
    assert failing == {} and report.total == len(cases) >= 40
    tent = report.by_id()["returns-tent-slept-in"].runs[0]
    assert tent.cited == ["returns@3"] and "60 days" in tent.answer and tent.outcome == "answer"
    assert tent.input_tokens > 0 and tent.output_tokens > 0 and tent.latency_ms > 0 and tent.rounds == 2
    assert tent.skipped == ["rubric (no judge: --judge)"]
    assert report.by_id()["returns-tent-after-two-trips"].passed  # earlier turns were the call's history
    assert await history.get_items("anything") == []  # nothing of the run reached the call record

    # the regression: only the Trail Tested cases of the returns suite fail, with their answers
    draft = edited_policies(tmp_path, "returns", TRAIL_TESTED_60, TRAIL_TESTED_60.replace("60", "30"))
    returns_cases = [c for c in cases if c.file == "returns.yaml"]
    live = await runner.run(returns_cases, searchable(library.documents), target="published")
    changed = await runner.run(returns_cases, searchable(load_policies(draft)), target="draft", repeat=2)
    gate = compare(live, changed)
    assert {b.id for b in gate.newly_failing} == TRAIL_TESTED_CASES and gate.blocked
    brief = next(b for b in gate.newly_failing if b.id == "returns-tent-slept-in")
    assert brief.failures == ["fact: does not state '60 days'"] and "within 30 days" in brief.answer
    assert (brief.file, brief.line, brief.cited, brief.pass_rate) == ("returns.yaml", 14, ["returns@3"], 0.0)
    assert gate.unchanged == len(returns_cases) - len(TRAIL_TESTED_CASES) and gate.newly_passing == []
    assert all(len(c.runs) == 2 for c in changed.cases)

    # an unrelated edit (gift cards) changes nothing
    old = "work in stores, online and by phone"
    other = edited_policies(tmp_path / "b", "gift-cards", old, "work everywhere")
    gift = [c for c in cases if c.file in ("gift-cards.yaml", "returns.yaml")]
    docs = with_changes(library.documents, [d for d in load_policies(other) if d.id == "gift-cards"])
    unrelated = compare(live, await runner.run(gift, searchable(docs), target="draft"))
    assert not unrelated.blocked and unrelated.newly_failing == [] and unrelated.passed == len(gift)


async def test_the_judge_is_the_simulators_text_model_and_deterministic(
    start_text_model: StartTextModel, history: CallHistory
) -> None:
    supervisor = await simulated_supervisor(start_text_model, history)
    judge = ModelJudge(supervisor.model)
    rubric = "Says a used tent can still be returned within 60 days under the Trail Tested guarantee."
    good = "Used tents can be returned within sixty days under the Trail Tested guarantee."
    verdict = await judge.judge("Can I return a used tent?", good, rubric)
    assert verdict.passed and verdict.input_tokens > 0
    assert (await judge.judge("q", good.replace("sixty", "thirty"), rubric)).reason == (
        "the answer does not state 60"
    )
    vague = await judge.judge("q", "Sixty days.", rubric)
    assert not vague.passed and vague.reason == (
        "the answer covers 10% of the rubric; missing: used, tent, still, return, within, under, trail, "
        "test, guarantee"
    )
    assert parse_verdict('Sure! {"verdict": "pass", "reason": "ok"}') == ("pass", "ok")
    assert parse_verdict("PASS")[0] == "fail"  # an answer nobody could grade does not pass


class _Scripted:
    """A text model that answers one fixed text (no tools): for a supervisor that fails."""

    def __init__(self, text: str) -> None:
        self.text = text

    async def complete(self, *_: object) -> ModelTurn:
        return ModelTurn(text=self.text)


async def test_a_failing_supervisor_is_a_fallback_outcome(
    start_text_model: StartTextModel, history: CallHistory, library: PolicyLibrary
) -> None:
    supervisor = await simulated_supervisor(start_text_model, history)
    supervisor.model = _Scripted("")  # no speakable answer: the supervisor's fallback line
    cases, _ = check_suite_text(
        "cases:\n  - id: falls-back\n    question: Anything?\n    expect:\n      outcome: fallback\n"
        "  - id: wants-answer\n    question: Anything?\n    expect:\n      facts: [60 days]\n",
        "x.yaml",
    )
    report = await SuiteRunner(supervisor).run(cases, library, target="x")
    assert [c.passed for c in report.cases] == [True, False]
    run = report.cases[1].runs[0]
    assert run.decision_outcome == "fallback" and run.outcome == "fallback"
    assert [f.kind for f in run.failures] == ["fact", "outcome"]
