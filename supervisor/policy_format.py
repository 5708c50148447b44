"""The policy document format: Markdown with YAML front matter, its schema and its checks.

A policy document::

    ---
    id: returns                  # ^[a-z0-9][a-z0-9-]{1,63}$, and the file is named <id>.md
    title: Returns and Refunds
    version: 3                   # the store assigns versions; a file states the one it holds
    tags: [returns, refunds]
    owner: Customer Care Operations
    effective_date: 2025-03-01
    status: published            # or draft
    related: [shipping]          # optional: ids of other policies this one refers to
    ---
    # Returns and Refunds
    Intro text (becomes the "Overview" section).
    ## Standard return window
    … see [[policy:warranty]] for defects …

References to other policies are the ``related:`` list and ``[[policy:ID]]`` links in the
body; both must name an existing policy. :func:`check_text` returns every problem with the
line it sits on; :func:`parse_policy` raises :class:`PolicyError` on the first ones.

Texts come from the editor, so from anyone with a token: the parse is bounded before it
starts. The front matter is at most ``MAX_FRONT_MATTER_BYTES`` and its collections nest at
most ``MAX_YAML_DEPTH`` deep — a quick bracket count refuses deeper flow nesting before the
YAML loader sees it (its flow scan is quadratic: 5,000 ``[`` cost it ~1 s), and the loader
itself refuses any deeper node (block nesting, brackets hidden in quotes). The body is read
line by line without backtracking regular expressions, in linear time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

ID_PATTERN = r"^[a-z0-9][a-z0-9-]{1,63}$"
ID_RE = re.compile(ID_PATTERN)
MAX_DOC_BYTES = 64 * 1024
MAX_SECTION_CHARS = 6000
MAX_FRONT_MATTER_BYTES = 4096  # a policy's fields take a few hundred bytes
MAX_YAML_DEPTH = 8  # collections inside collections; a policy needs 2 (fields → a list)

_FENCE_LINE = re.compile(r"^---[ \t]*$")
# the heading's text; closing blanks and hashes are stripped in Python (a lazy group before
# `[ \t#]*$` backtracked quadratically over a line of blanks)
_SECTION_HEADING = re.compile(r"^##[ \t]+(.+)$")
_TITLE_HEADING = re.compile(r"^#[ \t]+.*$")
_REFERENCE_OPEN = "[[policy:"  # a reference: this, then any text without "]", then "]]"
_FLOW_BRACKETS = re.compile(r"[\[\]{}]")
_VERSION_LINE = re.compile(r"^version[ \t]*:[^\r\n]*", re.MULTILINE)
_STATUS_LINE = re.compile(r"^status[ \t]*:[^\r\n]*", re.MULTILINE)

Status = Literal["draft", "published"]


class PolicyError(ValueError):
    """A policy document could not be parsed or is invalid."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a policy file, at a 1-based line."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class FrontMatter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=ID_PATTERN)
    title: str = Field(min_length=1, max_length=200)
    version: int = Field(ge=1, strict=True)  # a quoted "3" or 3.0 is refused, not read as 3
    tags: list[str] = Field(default_factory=list, max_length=30)
    owner: str = Field(min_length=1, max_length=200)
    effective_date: date
    status: Status = "draft"
    related: list[str] = Field(default_factory=list, max_length=30)


class PolicySection(BaseModel):
    model_config = ConfigDict(frozen=True)

    heading: str
    text: str
    line: int = 0  # the heading's line in the file (0: the overview before any heading)


class PolicyDocument(FrontMatter):
    sections: list[PolicySection] = Field(default_factory=list)
    references: list[str] = Field(default_factory=list)  # related + [[policy:ID]] links, in order
    source: str = ""
    content: str = ""  # the exact text the document was parsed from

    def label(self) -> str:
        return f"{self.id}@{self.version}"

    def section(self, heading: str) -> PolicySection | None:
        wanted = heading.strip().lower()
        return next((s for s in self.sections if s.heading.lower() == wanted), None)


# -- parsing with line numbers ------------------------------------------------------------------


@dataclass
class _Split:
    meta_text: str
    meta_first_line: int  # file line of the first front-matter line
    body_lines: list[str]
    body_first_line: int


def _split(text: str) -> _Split | None:
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or not _FENCE_LINE.match(lines[0]):
        return None
    for i in range(1, len(lines)):
        if _FENCE_LINE.match(lines[i]):
            return _Split("\n".join(lines[1:i]), 2, lines[i + 1 :], i + 2)
    return None


def _key_line(split: _Split, key: str) -> int:
    pattern = re.compile(rf"^{re.escape(key)}[ \t]*:")
    for offset, line in enumerate(split.meta_text.splitlines()):
        if pattern.match(line):
            return split.meta_first_line + offset
    return 1


def _sections(split: _Split, file: str, problems: list[Problem]) -> list[PolicySection]:
    sections: list[PolicySection] = []
    heading, heading_line, chunk = "Overview", 0, []

    def close() -> None:
        text = _squash("\n".join(chunk))
        where = heading_line or split.body_first_line
        if text:
            if len(text) > MAX_SECTION_CHARS:
                problems.append(
                    Problem(file, where, f"section {heading!r} is {len(text)} characters "
                            f"(limit {MAX_SECTION_CHARS}): split it")
                )
            sections.append(PolicySection(heading=heading, text=text, line=heading_line))
        elif heading_line:
            problems.append(Problem(file, heading_line, f"section {heading!r} is empty"))

    for offset, line in enumerate(split.body_lines):
        match = _SECTION_HEADING.match(line)
        if match:
            close()
            text = match.group(1)  # its first character stays, as the lazy group kept it
            text = text[:1] + text[1:].rstrip(" \t#")
            heading, heading_line, chunk = text.strip(), split.body_first_line + offset, []
        elif not _TITLE_HEADING.match(line):
            chunk.append(line)
    close()
    return sections


def _squash(text: str) -> str:
    """Join wrapped lines into paragraphs (blank lines stay paragraph breaks)."""
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    return "\n\n".join(p for p in paragraphs if p)


def _references(split: _Split, meta: FrontMatter) -> list[tuple[str, int]]:
    refs = [(rid, _key_line(split, "related")) for rid in meta.related]
    for offset, line in enumerate(split.body_lines):
        refs += [(rid, split.body_first_line + offset) for rid in _reference_ids(line)]
    return refs


def _reference_ids(line: str) -> list[str]:
    """The ids of ``[[policy:ID]]`` links in one line, in linear time: the first "]" after an
    opening is found once for all the openings before it (a regular expression scanned to the
    line's end from each of thousands of unterminated openings)."""
    ids: list[str] = []
    pos, close = 0, -1
    while (start := line.find(_REFERENCE_OPEN, pos)) != -1:
        begin = start + len(_REFERENCE_OPEN)
        if close < begin:
            close = line.find("]", begin)
            if close == -1:
                break
        if line.startswith("]]", close):
            ids.append(line[begin:close])
            pos = close + 2
        else:
            pos = start + 1
    return ids


_TOO_DEEP = f"invalid YAML front matter: nested too deeply (limit {MAX_YAML_DEPTH})"


def _flow_depth(meta_text: str) -> int:
    """The deepest ``[``/``{`` nesting, quotes and comments not excepted: it can only count
    too deep (then the text is refused), and the loader checks the real depth anyway."""
    depth = deepest = 0
    for match in _FLOW_BRACKETS.finditer(meta_text):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth = max(0, depth - 1)
    return deepest


class _BoundedLoader(yaml.SafeLoader):
    """The safe loader, refusing collections nested deeper than ``MAX_YAML_DEPTH``."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        opens = self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent)
        if opens and self._depth >= MAX_YAML_DEPTH:
            mark = self.peek_event().start_mark
            problem = _TOO_DEEP.removeprefix("invalid YAML front matter: ")
            raise yaml.MarkedYAMLError(None, None, problem, mark)
        self._depth += opens
        try:
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= opens


def check_text(text: str, file: str = "policy") -> tuple[PolicyDocument | None, list[Problem]]:
    """Parse one document; returns it (None when unusable) and every problem found in it alone."""
    problems: list[Problem] = []
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:  # a lone surrogate: not text any store or file can hold
        line = text.count("\n", 0, exc.start) + 1
        return None, [Problem(file, line, "document is not valid Unicode text (lone surrogate)")]
    if size > MAX_DOC_BYTES:
        problems.append(Problem(file, 1, f"document is {size} bytes (limit {MAX_DOC_BYTES})"))
    split = _split(text)
    if split is None:
        return None, [*problems, Problem(file, 1, "missing YAML front matter between '---' lines")]
    meta_size = len(split.meta_text.encode("utf-8"))
    if meta_size > MAX_FRONT_MATTER_BYTES:
        message = f"front matter is {meta_size} bytes (limit {MAX_FRONT_MATTER_BYTES})"
        return None, [*problems, Problem(file, split.meta_first_line, message)]
    if _flow_depth(split.meta_text) > MAX_YAML_DEPTH:
        return None, [*problems, Problem(file, split.meta_first_line, _TOO_DEEP)]
    try:
        raw = yaml.load(split.meta_text, Loader=_BoundedLoader)  # a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = split.meta_first_line + (mark.line if mark is not None else 0)
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return None, [*problems, Problem(file, line, f"invalid YAML front matter: {reason}")]
    except (ValueError, OverflowError, RecursionError) as exc:
        # a date that matches YAML's timestamp pattern but does not exist (2025-13-45), or
        # nesting deeper than the loader's recursion: the loader raises these, not YAMLError
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        return None, [*problems, Problem(file, 1, f"invalid YAML front matter: {reason}")]
    if not isinstance(raw, dict):
        return None, [*problems, Problem(file, 1, "front matter must be a mapping of fields")]
    meta: FrontMatter | None = None
    try:
        meta = FrontMatter.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            key = str(err["loc"][0]) if err["loc"] else ""
            where = ".".join(str(p) for p in err["loc"]) or "front matter"
            line = _key_line(split, key) if key and err["type"] != "missing" else 1
            problems.append(Problem(file, line, f"{where}: {err['msg']}"))
    sections = _sections(split, file, problems)
    if not sections:
        last = split.body_first_line - 1 + len(split.body_lines)  # the closing fence when empty
        problems.append(Problem(file, max(last, split.body_first_line - 1), "document has no content"))
    for rid, line in _references(split, meta) if meta else []:
        if not ID_RE.fullmatch(rid):
            problems.append(Problem(file, line, f"reference {rid!r} is not a valid policy id"))
    if meta is None or not sections:
        return None, problems
    doc = PolicyDocument(
        **meta.model_dump(),
        sections=sections,
        references=list(dict.fromkeys(r for r, _ in _references(split, meta))),
        source=file,
        content=text,
    )
    return doc, problems


def check_references(docs: list[PolicyDocument], known: set[str]) -> list[Problem]:
    """Problems for references to policy ids that are not in ``known``."""
    problems: list[Problem] = []
    for doc in docs:
        split = _split(doc.content)
        if split is None:
            continue
        for rid, line in _references(split, doc):
            if ID_RE.fullmatch(rid) and rid not in known:
                problems.append(Problem(doc.source, line, f"reference to unknown policy id {rid!r}"))
    return problems


def parse_policy(text: str, source: str = "") -> PolicyDocument:
    """Parse one document; raises :class:`PolicyError` listing its problems."""
    doc, problems = check_text(text, source or "policy")
    if problems or doc is None:
        raise PolicyError("; ".join(str(p) for p in problems))
    return doc


def split_sections(body: str) -> list[PolicySection]:
    """Split a Markdown body (no front matter) at ``## `` headings."""
    return _sections(_Split("", 2, body.splitlines(), 1), "body", [])


def with_version(text: str, version: int) -> str:
    """``text`` with its front matter's ``version:`` line set to ``version`` (nothing else moves)."""
    return _rewrite(text, _VERSION_LINE, f"version: {version}")


def with_status(text: str, status: Status) -> str:
    return _rewrite(text, _STATUS_LINE, f"status: {status}")


def _rewrite(text: str, pattern: re.Pattern[str], line: str) -> str:
    """Set one front-matter line; every other byte (line endings included) stays as it was."""
    lines = text.splitlines(keepends=True)
    if not lines or not _FENCE_LINE.match(lines[0].lstrip("\ufeff").rstrip("\r\n")):
        return text
    close = next((i for i in range(1, len(lines)) if _FENCE_LINE.match(lines[i].rstrip("\r\n"))), None)
    if close is None:
        return text
    head, tail = "".join(lines[:close]), "".join(lines[close:])
    if pattern.search(head):
        return pattern.sub(line, head, count=1) + tail
    newline = lines[0][len(lines[0].rstrip("\r\n")) :] or "\n"
    return head + line + newline + tail


def check_dir(
    directory: str | Path, also_known: Iterable[str] = ()
) -> tuple[list[PolicyDocument], list[Problem]]:
    """Every ``*.md`` document in ``directory`` (sorted by id) and every problem across them.

    Beyond each file's own problems: a file must be named ``<id>.md``, ids are unique, and
    references must name a policy of the directory (or one of ``also_known``: the store's).
    """
    docs: list[PolicyDocument] = []
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for path in sorted(Path(directory).glob("*.md")):
        try:
            text = path.read_bytes().decode("utf-8")  # exact bytes: no newline translation
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(path.name, 1, f"cannot read the file: {exc}"))
            continue
        doc, found = check_text(text, path.name)
        problems += found
        if doc is None:
            continue
        line = _key_line(_split(text), "id")  # type: ignore[arg-type]
        if doc.id in seen:
            message = f"duplicate policy id {doc.id!r} (also in {seen[doc.id]})"
            problems.append(Problem(path.name, line, message))
            continue
        if path.stem != doc.id:
            message = f"file name does not match id {doc.id!r}: name it {doc.id}.md"
            problems.append(Problem(path.name, line, message))
        seen[doc.id] = path.name
        docs.append(doc)
    problems += check_references(docs, {*seen, *also_known})
    return sorted(docs, key=lambda d: d.id), problems


def load_policies(directory: str | Path) -> list[PolicyDocument]:
    """Every document of ``directory``, sorted by id; raises :class:`PolicyError` on any problem."""
    docs, problems = check_dir(directory)
    if problems:
        raise PolicyError("\n".join(str(p) for p in problems))
    return docs
