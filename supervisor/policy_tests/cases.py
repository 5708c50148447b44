"""Policy test cases as data: ``policies/tests/<name>.yaml``, their schema and their checks.

A suite file::

    description: Returns and refunds          # optional
    cases:
      - id: tent-used-once                    # ^[a-z0-9][a-z0-9-]{1,63}$, unique across all files
        question: Can I return a tent I already slept in?
        turns:                                # optional: earlier turns of the call, oldest first
          - caller: Hi, I bought a tent last month.
          - agent: Sure, what would you like to know?
        data:                                 # optional: what the caller gave (tool data)
          phone: 555-555-0145                 # the account's phone number
          zip: "98103"                        # a ZIP code (billing or for a store search)
          order: NW-101233
        expect:
          policies: [returns]                 # the answer must be grounded in (cite) these
          facts:                              # each must be stated; a list = any one of them
            - 60 days
            - [Trail Tested, camping gear]
          not_say: [cannot be returned]       # none of these may be said
          outcome: answer                     # answer | escalate | decline | fallback
          rubric: >-                          # optional: for the model judge (--judge)
            Says a used tent can still be returned within 60 days.

:func:`check_suite_text` returns the cases of one file and every problem as ``file:line:
message`` (the same :class:`~supervisor.policy_format.Problem` as the policy checks): bad YAML,
aliases, duplicate keys, unknown or mistyped fields, each at the line it sits on.
:func:`check_suites` adds what needs every file: case ids unique across them, policy ids that
exist. YAML is read with libyaml when PyYAML has it (fast, with its own nesting limit).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from supervisor.policy_format import ID_PATTERN, Problem

__all__ = [
    "ANSWER",
    "DECLINE",
    "ESCALATE",
    "FALLBACK",
    "OUTCOMES",
    "Case",
    "Expect",
    "ExpectedOutcome",
    "SuiteCase",
    "check_suite_dir",
    "check_suite_text",
    "check_suites",
    "suite_name_problem",
]

ExpectedOutcome = Literal["answer", "escalate", "decline", "fallback"]
ANSWER: Final = "answer"  # the supervisor answers the question
ESCALATE: Final = "escalate"  # it offers (or makes) a hand-over to a person
DECLINE: Final = "decline"  # it politely declines: out of scope
FALLBACK: Final = "fallback"  # the supervisor failed (timeout, error, no answer): the fallback line
OUTCOMES: Final[tuple[ExpectedOutcome, ...]] = (ANSWER, ESCALATE, DECLINE, FALLBACK)

MAX_SUITE_BYTES = 128 * 1024
MAX_CASES_PER_FILE = 500
MAX_DEPTH = 12  # the schema nests 5 deep; anything deeper is not a suite
SUITE_SUFFIXES = (".yaml", ".yml")
_NAME_RE = re.compile(ID_PATTERN)
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Turn(BaseModel):
    """One earlier turn of the call: what the caller or the agent said."""

    model_config = ConfigDict(extra="forbid")

    caller: str | None = Field(default=None, min_length=1, max_length=2000)
    agent: str | None = Field(default=None, min_length=1, max_length=2000)

    @model_validator(mode="after")
    def _one_speaker(self) -> Turn:
        if (self.caller is None) == (self.agent is None):
            raise ValueError("a turn is either 'caller: …' or 'agent: …'")
        return self


class CaseData(BaseModel):
    """What the caller gave the responder: it goes into the context the supervisor gets."""

    model_config = ConfigDict(extra="forbid")

    phone: str | None = Field(default=None, pattern=r"^\+?[\d\s().-]{7,20}$")
    zip: str | None = Field(default=None, pattern=r"^\d{5}$")
    order: str | None = Field(default=None, pattern=r"^[A-Za-z0-9-]{3,32}$")

    def phrases(self) -> list[str]:
        parts = []
        if self.phone:
            parts.append(f"phone number {self.phone}")
        if self.zip:
            parts.append(f"ZIP {self.zip}")
        if self.order:
            parts.append(f"order {self.order}")
        return parts


Fact = str | list[str]


class Expect(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policies: list[str] = Field(default_factory=list, max_length=10)
    facts: list[Fact] = Field(default_factory=list, max_length=30)
    not_say: list[str] = Field(default_factory=list, max_length=30)
    outcome: ExpectedOutcome = ANSWER
    rubric: str | None = Field(default=None, min_length=1, max_length=2000)

    @model_validator(mode="after")
    def _no_empty_phrases(self) -> Expect:
        for fact in self.facts:
            options = [fact] if isinstance(fact, str) else fact
            if not options or any(not o.strip() for o in options):
                raise ValueError("a fact is a phrase, or a non-empty list of phrases (any one of them)")
        if any(not p.strip() for p in self.not_say):
            raise ValueError("not_say phrases must not be empty")
        for pid in self.policies:
            if not _NAME_RE.fullmatch(pid):
                raise ValueError(f"{pid!r} is not a valid policy id")
        return self


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=ID_PATTERN)
    question: str = Field(min_length=1, max_length=1000)
    turns: list[Turn] = Field(default_factory=list, max_length=50)
    data: CaseData | None = None
    expect: Expect

    def context(self) -> str:
        """What the responder would pass the supervisor: the question, plus what the caller gave."""
        parts = self.data.phrases() if self.data else []
        return self.question.strip() + (f" (details: {', '.join(parts)})" if parts else "")


class SuiteFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=2000)
    cases: list[Case] = Field(min_length=1, max_length=MAX_CASES_PER_FILE)


@dataclass(frozen=True)
class SuiteCase:
    """A case and where it is written (``file:line`` of its ``id``)."""

    case: Case
    file: str
    line: int
    policy_lines: tuple[int, ...] = ()  # the line of each expect.policies entry

    @property
    def id(self) -> str:
        return self.case.id

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


# -- YAML with line numbers -----------------------------------------------------------------------


def _structure_problems(text: str, file: str) -> list[Problem]:
    """Aliases (no billion laughs) and nesting deeper than any suite, found while streaming."""
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent):
            return [Problem(file, event.start_mark.line + 1, "YAML aliases (*name) are not allowed")]
        if isinstance(event, yaml.CollectionStartEvent):
            if event.anchor is not None:
                return [Problem(file, event.start_mark.line + 1, "YAML anchors (&name) are not allowed")]
            depth += 1
            if depth > MAX_DEPTH:
                return [Problem(file, event.start_mark.line + 1, "nested too deeply for a suite file")]
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return []


def _duplicate_keys(node: yaml.Node, file: str) -> list[Problem]:
    problems: list[Problem] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in current.value:
                name = str(key.value)
                if name in seen:
                    problems.append(Problem(file, key.start_mark.line + 1, f"duplicate key {name!r}"))
                seen.add(name)
                stack.append(value)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)
    return sorted(problems, key=lambda p: p.line)


def _node_at(node: yaml.Node, loc: Iterable[Any]) -> yaml.Node:
    """The node a pydantic error location points at, as far as the YAML goes."""
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            value = next((v for k, v in node.value if str(k.value) == str(part)), None)
            if value is None:
                return node  # a missing field: its mapping
            node = value
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
        else:
            break
    return node


def _line(node: yaml.Node, loc: tuple[Any, ...], error_type: str) -> int:
    if error_type == "extra_forbidden":  # the unknown key's own line
        parent = _node_at(node, loc[:-1])
        if isinstance(parent, yaml.MappingNode):
            for key, _value in parent.value:
                if str(key.value) == str(loc[-1]):
                    return int(key.start_mark.line) + 1
    target = _node_at(node, loc)
    return int(target.start_mark.line) + 1


def _message(err: Mapping[str, Any]) -> str:
    loc = [str(p) for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p in ("str", "list")))]
    where = ".".join(loc) or "file"
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}"


def check_suite_text(text: str, file: str = "suite.yaml") -> tuple[list[SuiteCase], list[Problem]]:
    """The cases of one suite file and every problem found in it alone."""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        line = text.count("\n", 0, exc.start) + 1
        return [], [Problem(file, line, "file is not valid Unicode text (lone surrogate)")]
    if size > MAX_SUITE_BYTES:
        return [], [Problem(file, 1, f"suite file is {size} bytes (limit {MAX_SUITE_BYTES})")]
    try:
        problems = _structure_problems(text, file)
        if problems:
            return [], problems
        root = yaml.compose(text, Loader=_Loader)
        raw = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return [], [Problem(file, line, f"invalid YAML: {reason}")]
    except (ValueError, OverflowError, RecursionError) as exc:  # e.g. an impossible date
        return [], [Problem(file, 1, f"invalid YAML: {exc}")]
    if root is None or not isinstance(raw, dict):
        return [], [Problem(file, 1, "a suite file is a mapping with a 'cases:' list")]
    problems = _duplicate_keys(root, file)
    try:
        suite = SuiteFile.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            problem = Problem(file, _line(root, tuple(err["loc"]), err["type"]), _message(err))
            if problem not in problems:  # a union reports once per member
                problems.append(problem)
        return [], sorted(problems, key=lambda p: p.line)
    cases = []
    for i, case in enumerate(suite.cases):
        case_node = _node_at(root, ("cases", i, "id"))
        policies_node = _node_at(root, ("cases", i, "expect", "policies"))
        entries = policies_node.value if isinstance(policies_node, yaml.SequenceNode) else []
        lines = tuple(int(n.start_mark.line) + 1 for n in entries)
        cases.append(SuiteCase(case, file, int(case_node.start_mark.line) + 1, lines))
    return cases, problems


def suite_name_problem(file: str) -> Problem | None:
    """A suite file is ``<name>.yaml`` (or ``.yml``) with a name like a policy id."""
    path = Path(file)
    if path.suffix not in SUITE_SUFFIXES or not _NAME_RE.fullmatch(path.stem):
        return Problem(file, 1, f"name the file <name>.yaml with a name matching {ID_PATTERN}")
    return None


def check_suites(
    texts: Mapping[str, str], known_policies: Iterable[str] | None = None, *, last: Iterable[str] = ()
) -> tuple[list[SuiteCase], list[Problem]]:
    """Every case of several suite files (file name → text) and every problem across them.

    Beyond each file's own problems: names ``<name>.yaml``, case ids unique across the files,
    and (when ``known_policies`` is given) every ``expect.policies`` id a known policy. The
    files in ``last`` are read after the others, so a duplicate id is reported in them.
    """
    known = set(known_policies) if known_policies is not None else None
    cases: list[SuiteCase] = []
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    later = set(last)
    for file in sorted(texts, key=lambda f: (f in later, f)):
        name_problem = suite_name_problem(file)
        if name_problem is not None:
            problems.append(name_problem)
        found, found_problems = check_suite_text(texts[file], file)
        problems += found_problems
        for item in found:
            if item.id in seen:
                message = f"duplicate case id {item.id!r} (also in {seen[item.id]})"
                problems.append(Problem(file, item.line, message))
                continue
            seen[item.id] = item.where
            for pid, line in zip(item.case.expect.policies, item.policy_lines or (), strict=False):
                if known is not None and pid not in known:
                    problems.append(Problem(file, line, f"expect.policies: unknown policy id {pid!r}"))
            cases.append(item)
    return cases, problems


def read_suite_dir(directory: str | Path) -> tuple[dict[str, str], list[Problem]]:
    """The suite files of ``directory`` (name → exact text) and the files that cannot be read."""
    texts: dict[str, str] = {}
    problems: list[Problem] = []
    root = Path(directory)
    if not root.is_dir():
        return texts, problems
    for path in sorted(p for p in root.iterdir() if p.suffix in SUITE_SUFFIXES and p.is_file()):
        try:
            texts[path.name] = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(path.name, 1, f"cannot read the file: {exc}"))
    return texts, problems


def check_suite_dir(
    directory: str | Path, known_policies: Iterable[str] | None = None
) -> tuple[list[SuiteCase], list[Problem]]:
    """Every case in the ``*.yaml`` files of ``directory`` (e.g. ``policies/tests``) and every problem."""
    texts, problems = read_suite_dir(directory)
    cases, found = check_suites(texts, known_policies)
    return cases, problems + found
