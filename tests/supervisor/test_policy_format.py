"""The policy format's checks: every problem with its file and line, and the CLI that prints them."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from responder.cli.main import main
from supervisor.policy_format import (
    MAX_SECTION_CHARS,
    check_dir,
    check_text,
    parse_policy,
    with_status,
    with_version,
)
from tests.support.paths import POLICIES_DIR

GOOD = """---
id: demo
title: Demo Policy
version: 2
tags: [demo]
owner: Test Team
effective_date: 2025-01-01
status: published
related: [other]
---
# Demo Policy

Intro.

## First rule

Kayaks ship by freight; see [[policy:other]].
"""

OTHER = GOOD.replace("id: demo", "id: other").replace("related: [other]", "related: []").replace(
    "[[policy:other]]", "the demo"
)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """``main()`` configures logging onto the test's captured stderr: put the old setup back."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


EMPTY_SECTION = GOOD.replace("Kayaks ship by freight; see [[policy:other]].\n", "")


def messages(text: str) -> list[str]:
    return [str(p) for p in check_text(text, "demo.md")[1]]


def test_a_valid_document_has_no_problems_and_keeps_its_exact_text() -> None:
    doc, problems = check_text(GOOD, "demo.md")
    assert problems == [] and doc is not None
    assert doc.content == GOOD and doc.references == ["other"]
    assert [(s.heading, s.line) for s in doc.sections] == [("Overview", 0), ("First rule", 15)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no front matter\n", "demo.md:1: missing YAML front matter"),
        (GOOD.replace("tags: [demo]", "tags: [demo"), "demo.md:6: invalid YAML front matter"),
        (GOOD.replace("version: 2", "version: two"), "demo.md:4: version: Input should be a valid integer"),
        (GOOD.replace("id: demo", "id: ../etc/passwd"), "demo.md:2: id: String should match pattern"),
        (GOOD.replace("owner: Test Team\n", ""), "demo.md:1: owner: Field required"),
        (GOOD.replace("status: published", "status: live"), "demo.md:8: status: Input should be 'draft'"),
        (GOOD.replace("effective_date: 2025-01-01", "effective_date: soon"), "demo.md:7: effective_date"),
        (GOOD.replace("title: Demo Policy", "title: Demo\ncolour: red"), "demo.md:4: colour: Extra inputs"),
        (EMPTY_SECTION, "demo.md:15: section 'First rule' is empty"),
        (GOOD[: GOOD.index("# Demo Policy")], "demo.md:10: document has no content"),
        (GOOD.replace("[[policy:other]]", "[[policy:Bad Id]]"), "demo.md:17: reference 'Bad Id' is not"),
    ],
)
def test_each_problem_names_its_line(text: str, expected: str) -> None:
    found = messages(text)
    assert any(m.startswith(expected) for m in found), found


def test_size_limits() -> None:
    long_section = GOOD.replace("Kayaks ship by freight", "word " * (MAX_SECTION_CHARS // 4))
    assert any(m.startswith("demo.md:15: section 'First rule' is") for m in messages(long_section))
    huge = GOOD + ("\n## More\n\n" + "x " * 3000) * 12
    assert any(m.startswith("demo.md:1: document is") and "limit" in m for m in messages(huge))


def test_directory_checks_duplicates_names_and_unknown_references(tmp_path: Path) -> None:
    (tmp_path / "demo.md").write_text(GOOD)
    (tmp_path / "copy.md").write_text(GOOD.replace("[[policy:other]]", "[[policy:nowhere]]"))
    docs, problems = check_dir(tmp_path)
    found = [str(p) for p in problems]
    assert "demo.md:2: duplicate policy id 'demo' (also in copy.md)" in found
    assert "copy.md:2: file name does not match id 'demo': name it demo.md" in found
    assert "copy.md:9: reference to unknown policy id 'other'" in found
    assert "copy.md:17: reference to unknown policy id 'nowhere'" in found
    (tmp_path / "copy.md").unlink()
    (tmp_path / "other.md").write_text(OTHER)
    docs, problems = check_dir(tmp_path)
    assert problems == [] and [d.id for d in docs] == ["demo", "other"]


def test_the_shipped_policies_pass_and_keep_their_versions() -> None:
    docs, problems = check_dir(POLICIES_DIR)
    assert problems == []
    versions = {d.id: d.version for d in docs}
    assert versions["returns"] == 3 and versions["warranty"] == 4 and versions["membership"] == 5


def test_cli_check_prints_file_line_messages_and_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    assert main(["policies", "check", str(POLICIES_DIR)]) == 0
    assert "returns@3" in capsys.readouterr().out
    for name in ("returns.md", "shipping.md"):
        shutil.copy(POLICIES_DIR / name, tmp_path / name)
    broken = (tmp_path / "shipping.md").read_text().replace("version: 2", "version: -1")
    (tmp_path / "shipping.md").write_text(broken)
    assert main(["policies", "check", str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert f"{tmp_path / 'shipping.md'}:4: version: Input should be greater than or equal to 1" in out


def test_parse_policy_raises_with_the_problems() -> None:
    with pytest.raises(ValueError, match=r"x\.md:4: version"):
        parse_policy(GOOD.replace("version: 2", "version: 0"), "x.md")


def test_version_and_status_rewrites_touch_only_their_line() -> None:
    bumped = with_version(GOOD, 7)
    assert bumped == GOOD.replace("version: 2", "version: 7")
    assert with_status(GOOD, "draft") == GOOD.replace("status: published", "status: draft")
    no_status = GOOD.replace("status: published\n", "")
    assert check_text(with_status(no_status, "published"))[0].status == "published"  # type: ignore[union-attr]
    crlf = no_status.replace("\n", "\r\n")  # an added line takes the file's line ending
    expected = crlf.replace("related: [other]\r\n", "related: [other]\r\nstatus: draft\r\n")
    assert with_status(crlf, "draft") == expected
    assert with_version(crlf, 3) == crlf.replace("version: 2", "version: 3")
