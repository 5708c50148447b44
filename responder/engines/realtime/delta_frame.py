"""The model's audio deltas recognised without ``json.loads``: the hot path's one parse.

With 20 ms deltas a call's model socket carries 50 ``response.output_audio.delta`` messages a
second, each ~330 bytes of which ~220 are the base64 audio. ``json.loads`` builds a dict of
seven fields for every one of them (~5 µs here) only for three strings to be read out of it.
:func:`audio_delta` reads those three straight from the bytes, for a message in the compact
form the Realtime API writes:

    {"type":"response.output_audio.delta"[,"event_id":ID],"response_id":ID,"item_id":ID
    [,"output_index":N][,"content_index":N],"delta":"<base64>"[,"event_id":ID]}

or with the event_id first (the simulator's order) or last (the load test's probe's), one
event_id at most, in this order, with no whitespace, no escapes and no other field (ID:
letters, digits, ``_`` and ``-``; N: a JSON integer). Such a message is valid JSON, and what
``json.loads`` makes of it has exactly these values (no escape to decode, no key twice whose
last copy would win). Anything else answers None, and the caller parses the message with
``json.loads`` as before: the fast path only changes what a delta costs, never which deltas
are accepted or what they say. Every repetition is possessive and bounded, so a hostile
message costs one pass over its head, and the audio is checked by one ``bytes.translate``
(on an interpreter whose possessive repeats are broken, :func:`infra.possessive.regex`
gives an expression that matches nothing).
"""

from __future__ import annotations

import re
from typing import Final

from infra import possessive

_TYPE: Final = b'"type":"response.output_audio.delta"'
_ID: Final = rb'"([A-Za-z0-9_-]{1,128}+)"'  # what an id may be here; others go the general way
_EVENT_ID: Final = rb'("event_id":"[A-Za-z0-9_-]{1,128}+")'  # captured: is there one already?
_INT: Final = rb"(?:0|[1-9][0-9]{0,8}+)"
# one order of the fields (an event_id first, right after the type, or last: the simulator's
# probe writes it there): one pass, and no key can come twice
_HEAD: Final = possessive.regex(
    rb"\{(?:" + _EVENT_ID + b"," + re.escape(_TYPE) + b"|" + re.escape(_TYPE)
    + rb"(?:," + _EVENT_ID + rb")?+)" + rb',"response_id":' + _ID + rb',"item_id":' + _ID
    + rb'(?:,"output_index":' + _INT + rb')?+(?:,"content_index":' + _INT + rb')?+,"delta":"'
)  # fmt: skip
_BASE64: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_TAIL: Final = b'"}'
_EVENT_TAIL: Final = possessive.regex(rb'","event_id":"[A-Za-z0-9_-]{1,128}+"\}')  # the event_id last


def audio_delta(message: bytes) -> tuple[str, str, str] | None:
    """``(item_id, response_id, delta)`` of a compact audio delta with non-empty audio; None
    for any other message (``json.loads`` decides those)."""
    head = _HEAD.match(message)
    if head is None:
        return None
    start = head.end()
    stop = message.find(b'"', start)
    audio = message[start:stop]
    if stop < 0 or not audio or audio.translate(None, _BASE64):  # empty, or a byte base64 has not
        return None
    if stop == len(message) - len(_TAIL):
        if not message.endswith(_TAIL):
            return None
    elif head[1] or head[2] or not _EVENT_TAIL.fullmatch(message, stop):  # never two event_ids
        return None
    return head[4].decode(), head[3].decode(), audio.decode()
