"""Does an answer state a fact? Matching tolerant of wording, case, punctuation and number forms.

Both the answer and the expected phrase are normalised into tokens the same way:

* lower case; punctuation dropped; hyphens and dashes split words ("30-day" → "30 day");
* number words become digits ("thirty" → 30, "twenty-five" → 25, "one hundred twenty" → 120),
  "1,000" → 1000, "1:00" → 1;
* amounts: "$14.95", "14.95 dollars" and "fourteen dollars and ninety-five cents" all become
  ``14.95 dollar``; "15%" and "fifteen percent" become ``15 percent``;
* ranges: "5–7", "5-7" and "five to seven" become ``5 to 7``; "1 p.m." and "1 pm" become ``1 pm``;
  dates: "2025-06-10" becomes ``june 10 2025`` and "June 10th" ``june 10``;
* the light stemmer of the policy search (days → day, returned → return), and "a", "an",
  "the", "per" are left out ("$25 per year" = "twenty-five dollars a year").

A fact matches when its tokens appear in the answer in order, with at most
:data:`MAX_GAP` other tokens between two of them ("free return labels" matches "free prepaid
return labels"). A phrase that must *not* be said matches only exactly (no gap). A fact can
also be a list of phrases, any one of which will do, for wordings no rule covers.

:func:`detect_outcome` reads what kind of answer it is: the supervisor's fallback (the run
failed), a decline (out of scope), an escalation (a colleague, a transfer), or an answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from supervisor.policies import stem
from supervisor.policy_tests.cases import ANSWER, DECLINE, ESCALATE, FALLBACK, ExpectedOutcome

MAX_GAP = 2

_TENS_WORDS = "twenty thirty forty fifty sixty seventy eighty ninety"
_UNITS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen".split()
    )
}
_TENS = {w: 10 * (i + 2) for i, w in enumerate(_TENS_WORDS.split())}
_SCALES = {"hundred": 100, "thousand": 1000}
_DROPPED = frozenset({"a", "an", "the", "per"})
_TOKEN = re.compile(r"\d+(?:\.\d+)?|[a-z]+(?:'[a-z]+)?")
_RANGE = re.compile(r"(\d)\s*[–—-]\s*(\$?\d)")
_DASH = re.compile(r"[–—‐‑-]")
_AM_PM = re.compile(r"\b([ap])\.\s?m\.?(?=\W|$)")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_OCLOCK = re.compile(r"\b(\d{1,2}):00\b")
_DOLLARS = re.compile(r"\$\s*(\d+(?:\.\d+)?)")
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_ORDINAL = re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)\b")
_MONTHS = "january february march april may june july august september october november december".split()

_HANDOVER = re.compile(
    r"\b(colleague|transfer\w*|connect you|put you through|specialist|representative|"
    r"member of (our|the) team|someone who can)\b"
)
_DECLINE = re.compile(
    r"\b(can ?not|can't|unable to|not able to)\s+(help|assist|advise|give you (medical|legal|financial)"
    r"|provide (medical|legal|financial))\b|\bcan only help with\b|\bnot something (i|we) can help with\b"
    r"|\boutside (of )?what (i|we) can\b"
)


def normalize(text: str) -> list[str]:
    """The tokens facts are matched on (see the module docstring)."""
    t = text.lower().replace("’", "'").replace("‘", "'")
    t = _ISO_DATE.sub(_spoken_date, t)
    t = _ORDINAL.sub(r"\1", t)
    t = _AM_PM.sub(r"\1m", t)
    t = _THOUSANDS.sub("", t)
    t = _OCLOCK.sub(r"\1", t)
    t = _RANGE.sub(r"\1 to \2", t)
    t = _DOLLARS.sub(r"\1 dollars", t)
    t = t.replace("%", " percent ")
    t = _DASH.sub(" ", t)
    return _fold_money(_fold_numbers(_TOKEN.findall(t)))


def _spoken_date(match: re.Match[str]) -> str:
    """2025-06-10 → "june 10 2025" (as an answer would say it)."""
    year, month, day = (int(g) for g in match.groups())
    if not 1 <= month <= 12:
        return match.group(0)
    return f"{_MONTHS[month - 1]} {day} {year}"


def _fold_numbers(words: list[str]) -> list[str]:
    out: list[str] = []
    pending: int | None = None
    for word in words:
        value = _UNITS.get(word, _TENS.get(word))
        if value is not None:
            if pending is not None and _joins(pending, value):
                pending += value
            else:
                if pending is not None:
                    out.append(str(pending))
                pending = value
            continue
        if word in _SCALES and pending is not None:
            pending *= _SCALES[word]
            continue
        if pending is not None:
            out.append(str(pending))
            pending = None
        if word in _DROPPED:
            continue
        out.append(_number(word) if word[0].isdigit() else stem(word.removesuffix("'s")))
    if pending is not None:
        out.append(str(pending))
    return out


def _joins(pending: int, value: int) -> bool:
    hundreds = pending >= 100 and pending % 100 == 0  # "one hundred" + "twenty"
    tens = pending % 100 >= 20 and pending % 10 == 0 and value < 10  # "twenty" + "five"
    return hundreds or tens


def _number(token: str) -> str:
    """One spelling per number: 25.00 → 25, 14.50 → 14.5."""
    if "." in token:
        token = token.rstrip("0").rstrip(".")
    return token or "0"


def _fold_money(tokens: list[str]) -> list[str]:
    """``14 dollar [and] 95 cent`` → ``14.95 dollar``."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        cents_at = i + 3 if tokens[i + 2 : i + 3] == ["and"] else i + 2
        if (
            tokens[i].isdigit()
            and tokens[i + 1 : i + 2] == ["dollar"]
            and tokens[cents_at : cents_at + 1] != []
            and tokens[cents_at].isdigit()
            and tokens[cents_at + 1 : cents_at + 2] == ["cent"]
        ):
            out += [_number(f"{tokens[i]}.{int(tokens[cents_at]):02d}"), "dollar"]
            i = cents_at + 2
            continue
        out.append(tokens[i])
        i += 1
    return out


def contains(answer: Sequence[str], phrase: Sequence[str], max_gap: int = MAX_GAP) -> bool:
    """Whether ``phrase``'s tokens occur in ``answer`` in order, at most ``max_gap`` apart."""
    if not phrase:
        return True

    def from_(start: int, k: int) -> bool:
        if k == len(phrase):
            return True
        stop = len(answer) if k == 0 else min(len(answer), start + max_gap + 1)
        return any(answer[i] == phrase[k] and from_(i + 1, k + 1) for i in range(start, stop))

    return from_(0, 0)


def states(answer: str, fact: str | Sequence[str]) -> bool:
    """Whether the answer states ``fact`` (a phrase, or a list of phrases: any one of them)."""
    tokens = normalize(answer)
    options = [fact] if isinstance(fact, str) else list(fact)
    return any(contains(tokens, normalize(option)) for option in options)


def says(answer: str, phrase: str) -> bool:
    """Whether the answer says ``phrase`` exactly (after normalisation): for things it must not say."""
    return contains(normalize(answer), normalize(phrase), max_gap=0)


def detect_outcome(text: str, decision_outcome: str) -> ExpectedOutcome:
    """What the caller got: the fallback line, a decline, a hand-over, or an answer."""
    if decision_outcome != "ok":
        return FALLBACK
    lowered = text.lower().replace("’", "'")
    if _DECLINE.search(lowered):
        return DECLINE
    if _HANDOVER.search(lowered):
        return ESCALATE
    return ANSWER
