"""Fast paths for the frames a Twilio Media Stream sends most: ``media`` (50 a second) and
the echo of our own ``mark`` (:func:`mark_name`, ten a second while the agent speaks).

:func:`media_payload` recognises a media frame by one regular expression that spells out the
whole frame — every key, in one of the orders Twilio (or our simulated caller) writes them,
with any JSON whitespace between tokens — and returns its base64 payload without building a
dict. A frame the expression matches is valid JSON whose ``json.loads`` is exactly
``{"event": "media", "sequenceNumber": …, "media": {…, "payload": P}, "streamSid": …}``: no
escapes, no duplicate keys, no other fields. Anything else (odd but valid JSON included)
answers None, and the caller parses it with ``json.loads`` as before.

Every repetition is possessive and the payload is scanned by one alternative only: a frame
that is media-shaped up to its last byte costs one pass, not a backtrack through each of its
characters per alternative (a 64 KB one took 1.6 ms to turn down, longer than ``json.loads``;
a client sending nothing else held the event loop ~40 ms late for every call). On an
interpreter whose possessive repeats are broken both answer None (:func:`infra.possessive.regex`).
"""

from __future__ import annotations

from infra import possessive

_WS = r"[ \t\n\r]*+"  # possessive: what a class matched is never given back (no backtracking)


def _pair(key: str, value: str) -> str:
    return f'"{key}"{_WS}:{_WS}{value}'


def _sep() -> str:
    return f"{_WS},{_WS}"


_DIGITS = r'"[0-9]++"'
_SID = _pair("streamSid", r'"[A-Za-z0-9_-]*+"')
_MEDIA = _pair(
    "media",
    "\\{"
    + _WS
    + _sep().join(
        (
            _pair("track", r'"[a-z_]++"'),
            _pair("chunk", _DIGITS),
            _pair("timestamp", _DIGITS),
            _pair("payload", r'"([A-Za-z0-9+/]*+={0,2}+)"'),
        )
    )
    + _WS
    + "\\}",
)
_HEAD = "\\{" + _WS + _pair("event", '"media"') + _sep() + _pair("sequenceNumber", _DIGITS) + _sep()
# Twilio writes streamSid after media; the simulated caller before it
_MEDIA_FRAME = possessive.regex(
    _HEAD + f"(?:{_MEDIA}(?:{_sep()}{_SID})?+|{_SID}{_sep()}{_MEDIA})" + _WS + "\\}"
)


def media_payload(frame: str) -> str | None:
    """The base64 payload of a well-formed media frame; None when ``frame`` is anything else."""
    if not frame.startswith("{"):
        return None
    match = _MEDIA_FRAME.fullmatch(frame)
    if match is None:
        return None
    payload: str | None = match[1]  # one group per order the frame can have its keys in
    return payload if payload is not None else match[2]


MARK_FRAME_MAX = 512  # an echo of ours is ~120 characters (a 34-character streamSid, a 13-character name)
_MARK_NAME = _pair("mark", "\\{" + _WS + _pair("name", r'"(m[0-9]{1,12}+)"') + _WS + "\\}")
_MARK_FRAME = possessive.regex(
    "\\{" + _WS + _pair("event", '"mark"') + _sep() + f"(?:{_pair('sequenceNumber', _DIGITS)}{_sep()})?+"
    + f"(?:{_SID}{_sep()}{_MARK_NAME}|{_MARK_NAME}{_sep()}{_SID})" + _WS + "\\}"
)  # fmt: skip


def mark_name(frame: str) -> str | None:
    """The name of an echoed mark of ours (``m`` and digits, as :mod:`responder.core.playback`
    names them) in a well-formed ``mark`` frame; None when ``frame`` is anything else."""
    if len(frame) > MARK_FRAME_MAX or not frame.startswith(('{"event":"mark"', '{"event": "mark"')):
        return None  # a longer one is not an echo of ours: json.loads decides, as before
    match = _MARK_FRAME.fullmatch(frame)
    if match is None:
        return None
    name: str | None = match[1]
    return name if name is not None else match[2]
