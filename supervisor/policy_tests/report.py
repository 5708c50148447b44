"""A suite run as text: a table for people, JSON for tools, JUnit XML for CI systems.

JUnit XML is written with :mod:`xml.etree.ElementTree` (escaping included): one
``<testsuite>`` per suite file, one ``<testcase>`` per case (``time`` = the mean latency of its
runs), a ``<failure>`` with every failed expectation and the answer when the case failed,
the pass rate and what it cited as properties.
"""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET
from collections import defaultdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, Literal

from supervisor.suite_record import GateRecord

if TYPE_CHECKING:  # the runner pulls in the agent and the SDK: not needed to parse the command line
    from supervisor.policy_tests.runner import CaseResult, SuiteReport

Format = Literal["table", "json", "junit"]
FORMATS: Final[tuple[Format, ...]] = ("table", "json", "junit")


def render(report: SuiteReport, fmt: Format) -> str:
    if fmt == "json":
        return report.model_dump_json(indent=2) + "\n"
    if fmt == "junit":
        return junit(report)
    return table(report)


def _mean_ms(case: CaseResult) -> float:
    return sum(r.latency_ms for r in case.runs) / len(case.runs) if case.runs else 0.0


def table(report: SuiteReport) -> str:
    lines: list[str] = []
    width = max((len(c.id) for c in report.cases), default=10)
    for case in report.cases:
        run = case.first_failure() or case.runs[0]
        mark = "PASS" if case.passed else "FAIL"
        rate = f"{case.passes}/{len(case.runs)}"
        tokens = f"{sum(r.input_tokens for r in case.runs) // len(case.runs)}/" + str(
            sum(r.output_tokens for r in case.runs) // len(case.runs)
        )
        cited = ",".join(run.cited) or "-"
        lines.append(
            f"{mark}  {case.id:<{width}}  {rate:>5}  {_mean_ms(case):7.0f} ms  tokens {tokens:<11} "
            f"{cited:<24} {case.file}:{case.line}"
        )
        if not case.passed:
            for failure in run.failures:
                lines.append(f"      ✗ {failure}")
            lines.append(_wrapped("answer", textwrap.shorten(run.answer, 400, placeholder=" …")))
        skipped = sorted({s for r in case.runs for s in r.skipped})
        if skipped:
            lines.append(f"      skipped: {', '.join(skipped)}")
    latency = report.latency_ms
    runs = sum(len(c.runs) for c in report.cases)
    lines.append("")
    lines.append(
        f"{report.total} cases, {report.passed} passed, {report.failed} failed "
        f"({report.repeat} run(s) each, {runs} runs) in {report.wall_s:.2f} s · latency p50 "
        f"{latency['p50']:.0f} ms, p95 {latency['p95']:.0f} ms · tokens {report.tokens['input']} in / "
        f"{report.tokens['output']} out"
    )
    model = f"{report.model} (simulator)" if report.simulator else report.model
    lines.append(f"against {report.target}: {', '.join(report.policies) or 'no policies'} · model {model}")
    return "\n".join(lines) + "\n"


def junit(report: SuiteReport) -> str:
    root = ET.Element(
        "testsuites",
        name="policy tests",
        tests=str(report.total),
        failures=str(report.failed),
        errors="0",
        time=f"{report.wall_s:.3f}",
    )
    by_file: dict[str, list[CaseResult]] = defaultdict(list)
    for case in report.cases:
        by_file[case.file].append(case)
    stamp = datetime.fromtimestamp(report.started_at, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    for file, cases in sorted(by_file.items()):
        suite = ET.SubElement(
            root,
            "testsuite",
            name=file,
            tests=str(len(cases)),
            failures=str(sum(not c.passed for c in cases)),
            errors="0",
            skipped="0",
            time=f"{sum(_mean_ms(c) for c in cases) / 1000:.3f}",
            timestamp=stamp,
        )
        props = ET.SubElement(suite, "properties")
        for name, value in (
            ("target", report.target),
            ("policies", ",".join(report.policies)),
            ("suite_version", str(report.suite.get(file, 0))),
            ("model", report.model),
            ("simulator", str(report.simulator).lower()),
            ("repeat", str(report.repeat)),
        ):
            ET.SubElement(props, "property", name=name, value=value)
        for case in cases:
            element = ET.SubElement(
                suite,
                "testcase",
                classname=f"policies.tests.{file.rsplit('.', 1)[0]}",
                name=case.id,
                file=file,
                line=str(case.line),
                time=f"{_mean_ms(case) / 1000:.3f}",
            )
            run = case.first_failure() or case.runs[0]
            case_props = ET.SubElement(element, "properties")
            ET.SubElement(case_props, "property", name="pass_rate", value=f"{case.pass_rate:g}")
            ET.SubElement(case_props, "property", name="cited", value=",".join(run.cited))
            if not case.passed:
                failure = ET.SubElement(
                    element,
                    "failure",
                    message="; ".join(str(f) for f in run.failures)[:500],
                    type=",".join(sorted({f.kind for f in run.failures})),
                )
                failure.text = "\n".join([*(str(f) for f in run.failures), f"answer: {run.answer}"])
            out = ET.SubElement(element, "system-out")
            cited = ", ".join(run.cited) or "-"
            out.text = f"question: {case.question}\nanswer: {run.answer}\ncited: {cited}"
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def gate_text(gate: GateRecord) -> str:
    """What a publish gate found, for the CLI."""
    lines = [
        f"policy tests: {gate.passed}/{gate.total} pass with the change, {gate.baseline_passed}/{gate.total} "
        f"on the live set ({len(gate.newly_failing)} newly failing, {len(gate.newly_passing)} newly "
        f"passing, {gate.unchanged} unchanged, {len(gate.still_failing)} still failing)"
    ]
    for brief in gate.newly_failing:
        lines.append(f"  newly failing: {brief.id} ({brief.file}:{brief.line})")
        lines += [f"      ✗ {f}" for f in brief.failures]
        lines.append(_wrapped("answer", brief.answer))
    if gate.newly_passing:
        shown = ", ".join(gate.newly_passing[:12]) + (" …" if len(gate.newly_passing) > 12 else "")
        lines.append(f"  newly passing: {shown}")
    if gate.override_reason:
        lines.append(f"  published anyway by {gate.override_by}: {gate.override_reason}")
    return "\n".join(lines) + "\n"


def _wrapped(label: str, text: str) -> str:
    return textwrap.fill(text, 100, initial_indent=f"      {label}: ", subsequent_indent="        ")


def gate_json(gate: GateRecord) -> str:
    return json.dumps({**gate.model_dump(), "blocked": gate.blocked}, indent=2) + "\n"
