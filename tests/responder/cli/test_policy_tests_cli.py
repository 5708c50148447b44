"""`responder policies test` and the gate of `policies import` / `publish`, in-process through
main() against the simulator (no key) and the test Redis: JSON and JUnit reports, a malformed
case file refused with file:line, the Trail Tested regression refused until --force --reason."""

from __future__ import annotations

import io
import json
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from responder.cli.main import main
from responder.cli.policies import ProgressBar
from tests.support.paths import POLICIES_DIR

TRAIL_TESTED_60 = "can be returned within 60 days of purchase under the Trail Tested"
REASON = "Legal moved the Trail Tested window to 30 days on July 1"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """``main()`` configures logging onto the test's captured stderr: put the old setup back."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def store_env(redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("RESPONDER_REDIS_PREFIX", key_prefix)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def policies_copy(tmp_path: Path, name: str = "policies", suites: tuple[str, ...] = ()) -> Path:
    """The sample policies and tool data; only the named suites (all when empty)."""
    copy = tmp_path / name
    shutil.copytree(POLICIES_DIR, copy)
    if suites:
        for path in (copy / "tests").iterdir():
            if path.stem not in suites:
                path.unlink()
    return copy


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_json_and_junit_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["policies", "test", str(POLICIES_DIR), "--case", "gift-cards-*", "--case", "handover-*"]
    assert main([*args, "--format", "json", "--repeat", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["total"], report["passed"], report["failed"], report["repeat"]) == (5, 5, 0, 2)
    assert report["simulator"] is True and report["policies"][0] == "account-security@2"
    expiry = next(c for c in report["cases"] if c["id"] == "gift-cards-expiry")
    assert (expiry["file"], expiry["line"], expiry["pass_rate"], len(expiry["runs"])) == (
        "gift-cards.yaml",
        4,
        1.0,
        2,
    )
    run = expiry["runs"][0]
    assert run["cited"] == ["gift-cards@2"] and "never expire" in run["answer"] and run["outcome"] == "answer"
    assert (
        run["latency_ms"] > 0 and run["input_tokens"] > 0 and run["skipped"] == ["rubric (no judge: --judge)"]
    )
    assert report["latency_ms"]["p50"] > 0 and report["tokens"]["input"] > 0

    draft = policies_copy(tmp_path)
    edit(draft / "returns.md", TRAIL_TESTED_60, TRAIL_TESTED_60.replace("60", "30"))
    out = tmp_path / "report.xml"
    assert (
        main(
            ["policies", "test", str(draft), "--case", "returns-*", "--format", "junit", "--output", str(out)]
        )
        == 1
    )
    assert "9/15 passed; report written to" in capsys.readouterr().err
    root = ET.fromstring(out.read_text(encoding="utf-8"))
    assert (root.tag, root.get("tests"), root.get("failures")) == ("testsuites", "15", "6")
    [suite] = root.findall("testsuite")
    assert (suite.get("name"), suite.get("tests"), suite.get("failures")) == ("returns.yaml", "15", "6")
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}  # type: ignore[union-attr]
    assert props["simulator"] == "true" and "returns@3" in props["policies"]  # type: ignore[operator]
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    tent = cases["returns-tent-slept-in"]
    assert (tent.get("file"), tent.get("line"), tent.get("classname")) == (
        "returns.yaml", "14", "policies.tests.returns"
    )  # fmt: skip
    failure = tent.find("failure")
    assert failure is not None and failure.get("type") == "fact"
    assert failure.get("message") == "fact: does not state '60 days'" and "within 30 days" in (
        failure.text or ""
    )
    assert "answer:" in (tent.findtext("system-out") or "") and float(tent.get("time") or 0) > 0
    assert cases["returns-unused-window"].find("failure") is None


def test_a_malformed_case_file_is_refused_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], store_env: None
) -> None:
    broken = policies_copy(tmp_path, suites=("returns", "gift-cards"))
    edit(
        broken / "tests" / "gift-cards.yaml",
        "      facts: [never expire, no fees]",
        "      fact: [never expire]",
    )
    where = f"{broken}/tests/gift-cards.yaml:8"
    for command in (["test"], ["check"], ["import", "--author", "ana"]):
        assert main(["policies", command[0], str(broken), *command[1:]]) == 1, command
        output = capsys.readouterr().out
        assert f"{where}: cases.0.expect.fact: Extra inputs are not permitted" in output, command
    assert main(["policies", "history", "returns"]) == 1  # the import stored nothing
    assert "no policy 'returns'" in capsys.readouterr().err


def test_publish_and_import_are_gated_and_an_override_records_its_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], store_env: None
) -> None:
    small = policies_copy(tmp_path, suites=("returns", "gift-cards"))
    assert main(["policies", "import", str(small), "--author", "ana"]) == 0
    out = capsys.readouterr().out
    assert (
        "returns@3 saved" in out
        and "tests/returns.yaml@1 saved" in out
        and "tests/gift-cards.yaml@1 saved" in out
    )

    # a draft with the Trail Tested window at 30 days: saving it is not gated, publishing it is
    drafts = tmp_path / "drafts"
    drafts.mkdir()
    shutil.copy(small / "returns.md", drafts / "returns.md")
    edit(drafts / "returns.md", TRAIL_TESTED_60, TRAIL_TESTED_60.replace("60", "30"))
    edit(drafts / "returns.md", "status: published", "status: draft")
    assert main(["policies", "import", str(drafts), "--author", "ana"]) == 0
    assert "returns@4 saved" in capsys.readouterr().out

    # the store's sets can be tested as they are: the draft set fails the Trail Tested cases
    assert main(["policies", "test", "--set", "draft", "--case", "returns-*", "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["target"], report["failed"], report["suite"]) == (
        "the draft set", 6, {"gift-cards.yaml": 1, "returns.yaml": 1}
    )  # fmt: skip
    assert main(["policies", "test", "--set", "published", "--case", "returns-*"]) == 0
    assert "15 cases, 15 passed, 0 failed" in capsys.readouterr().out

    assert main(["policies", "publish", "returns", "4", "--author", "cy"]) == 1
    err = capsys.readouterr().err
    assert "policy tests: 12/18 pass with the change, 18/18 on the live set (6 newly failing" in err
    assert "newly failing: returns-tent-slept-in (returns.yaml:14)" in err and "within 30 days" in err
    assert "refused: 6 policy test case(s) would newly fail" in err
    assert main(["policies", "publish", "returns", "4", "--author", "cy", "--force"]) == 2
    assert "--force needs --reason" in capsys.readouterr().err
    assert (
        main(["policies", "show", "returns"]) == 0 and "version: 3" in capsys.readouterr().out
    )  # still live

    assert main(["policies", "publish", "returns", "4", "--author", "cy", "--force", "--reason", REASON]) == 0
    out = capsys.readouterr().out
    assert f"published anyway by cy: {REASON}" in out and out.endswith(
        "returns@5 published (content of version 4)\n"
    )
    assert main(["policies", "history", "returns"]) == 0
    latest = capsys.readouterr().out.splitlines()[0]
    assert latest.startswith("returns@5") and "published" in latest
    assert f"[tests 12/18 passed, 6 newly failing; published anyway by cy: {REASON}]" in latest

    # an import that breaks another returns answer is refused, and stores nothing
    worse = tmp_path / "worse"
    worse.mkdir()
    shutil.copy(small / "returns.md", worse / "returns.md")
    edit(worse / "returns.md", "returned within 15 days of purchase", "returned within 10 days of purchase")
    assert main(["policies", "import", str(worse), "--author", "ana"]) == 1
    err = capsys.readouterr().err
    assert "newly failing: returns-headlamp-opened" in err and "6 newly passing" in err  # 60 days is back
    assert main(["policies", "history", "returns"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("returns@5")

    # an unrelated edit goes through, its gate record kept with the version
    unrelated = tmp_path / "unrelated"
    unrelated.mkdir()
    shutil.copy(small / "gift-cards.md", unrelated / "gift-cards.md")
    edit(unrelated / "gift-cards.md", "work in stores, online and by phone", "work everywhere")
    assert main(["policies", "import", str(unrelated), "--author", "ana"]) == 0
    out = capsys.readouterr().out
    assert (
        "(0 newly failing, 0 newly passing, 12 unchanged, 6 still failing)" in out
        and "gift-cards@3 saved" in out
    )

    # suites are exported with the policies, byte for byte
    assert main(["policies", "export", str(tmp_path / "out")]) == 0
    assert "2 test suites written to" in capsys.readouterr().out
    exported = (tmp_path / "out" / "tests" / "returns.yaml").read_bytes()
    assert exported == (POLICIES_DIR / "tests" / "returns.yaml").read_bytes()


def test_the_progress_bar_draws_one_line() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream, width=10)
    bar(3, 10, 1)
    bar(10, 10, 1)
    bar.close()
    assert stream.getvalue() == "\r[###-------] 3/10 runs, 1 failed\r[##########] 10/10 runs, 1 failed\n"
