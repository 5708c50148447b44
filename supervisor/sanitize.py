"""Turn model text into speech-ready prose.

Text models write for screens: headings, bullets, bold, links, code ticks and citation
tokens. A voice reads every character aloud, so :func:`to_speech` removes the markup and
returns the citations separately, for the Decision record instead of the caller's ear.
"""

from __future__ import annotations

import re

# Citation tokens, one alternative per style; the first group that matched holds the reference(s):
# 【policy:returns@3】, [policy:returns@3], [returns@3], (source: returns policy).
_CITATION = re.compile(
    r"【([^】]*)】"
    r"|\[\s*((?:policy|policies|source|sources|doc|ref)\s*:[^\]]*)\]"
    r"|\[\s*([a-z0-9][a-z0-9_-]*@\d+(?:\s*[,;]\s*[a-z0-9][a-z0-9_-]*@\d+)*)\s*\]"
    r"|\(\s*((?:source|sources|policy|policies|ref|see)\s*:[^)]*)\)",
    re.IGNORECASE,
)
_CITATION_PREFIX = re.compile(r"^(?:policy|policies|source|sources|doc|ref|see)\s*:\s*", re.IGNORECASE)

_FENCE = re.compile(r"^\s*(?:```|~~~).*$", re.MULTILINE)
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_REF_LINK = re.compile(r"\[([^\]]+)\]\[[^\]]*\]")
_AUTOLINK = re.compile(r"<(https?://[^>]+)>")
_CODE = re.compile(r"`+([^`]*)`+")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_ITALIC_STAR = re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])")
_ITALIC_UNDERSCORE = re.compile(r"(?<![\w_])_(?=\S)(.+?)(?<=\S)_(?![\w_])")
_STRIKE = re.compile(r"~~(.+?)~~")
_HTML_TAG = re.compile(r"</?[a-zA-Z][^>]*>")

_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^\s*(?:[-*+•‣◦]|\d{1,3}[.)]|[a-zA-Z][.)](?=\s))\s+(.*)$")
_QUOTE = re.compile(r"^\s*>+\s?")
_RULE = re.compile(r"^\s*(?:[-*_=]\s*){3,}$")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)*\|?\s*$")

_SENTENCE_END = (".", "!", "?", ":", "…")


def to_speech(text: str) -> tuple[str, list[str]]:
    """Strip markup and citations from ``text``.

    Returns ``(clean_text, citations)``: ``clean_text`` is one paragraph of plain sentences
    (list items become sentences, headings are dropped unless nothing else is left);
    ``citations`` are the removed references in order of appearance, without duplicates and
    without their ``policy:``/``source:`` prefix (``"returns@3"``).
    """
    citations: list[str] = []
    text = _extract_citations(text, citations)
    text = _inline(text)

    sentences: list[str] = []
    headings: list[str] = []
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            sentences.append(_as_sentence(" ".join(paragraph)))
            paragraph.clear()

    for raw in text.splitlines():
        line = _QUOTE.sub("", raw).strip()
        if not line or _RULE.match(line) or _TABLE_SEPARATOR.match(line):
            flush()
            continue
        if heading := _HEADING.match(line):
            flush()
            headings.append(heading.group(1))
            continue
        if bullet := _BULLET.match(line):
            flush()
            sentences.append(_as_sentence(bullet.group(1)))
            continue
        if "|" in line and line.count("|") >= 2:
            flush()
            cells = [c.strip() for c in line.strip("|").split("|") if c.strip()]
            sentences.append(_as_sentence(", ".join(cells)))
            continue
        paragraph.append(line)
    flush()

    if not any(s.strip() for s in sentences):
        sentences = [_as_sentence(h) for h in headings]
    return _tidy(" ".join(sentences)), citations


def _extract_citations(text: str, found: list[str]) -> str:
    def take(match: re.Match[str]) -> str:
        refs = next(g for g in match.groups() if g is not None)
        for part in re.split(r"[,;]", refs):
            ref = _CITATION_PREFIX.sub("", part.strip()).strip()
            if ref and ref not in found:
                found.append(ref)
        return " "

    return _CITATION.sub(take, text)


def _inline(text: str) -> str:
    text = _FENCE.sub("", text)
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _REF_LINK.sub(r"\1", text)
    text = _AUTOLINK.sub(r"\1", text)
    text = _CODE.sub(r"\1", text)
    text = _HTML_TAG.sub("", text)
    for _ in range(2):  # nested emphasis such as ***bold italic***
        text = _BOLD.sub(r"\2", text)
        text = _ITALIC_STAR.sub(r"\1", text)
        text = _ITALIC_UNDERSCORE.sub(r"\1", text)
    text = _STRIKE.sub(r"\1", text)
    return text


def _as_sentence(text: str) -> str:
    text = text.strip().rstrip(",;")
    if text and not text.endswith(_SENTENCE_END):
        text += "."
    return text


def _tidy(text: str) -> str:
    text = text.replace("**", "").replace("__", "")
    text = re.sub(r"(?<!\w)[*#`]+|[*#`]+(?!\w)", "", text)  # stray markers, never inside words
    text = re.sub(r"\(\s*\)|\[\s*\]", "", text)
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+([.,!?;:])", r"\1", text)
    text = re.sub(r":\s*(?=[.!?])", "", text)
    text = re.sub(r"(?<![.])\.\.(?![.])", ".", text)
    text = re.sub(r"([!?])\.", r"\1", text)
    return text.strip()
