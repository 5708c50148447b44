"""The model's audio deltas read without ``json.loads`` (``delta_frame.audio_delta``): the
compact forms are read, everything else steps aside for the general parser, and whatever the
fast path reads is exactly what ``json.loads`` and the general path make of the message."""

from __future__ import annotations

import base64
import importlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from responder.engines.realtime.delta_frame import _EVENT_TAIL, _HEAD, audio_delta
from responder.engines.realtime.engine import _audio_fast
from tests.support.regex import repeats

AUDIO = base64.b64encode(bytes(range(160))).decode()
TYPE = "response.output_audio.delta"


def compact(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


NO_EVENT_ID = {
    "type": TYPE, "response_id": "resp_9", "item_id": "item_7", "output_index": 0, "content_index": 0,
    "delta": AUDIO,
}  # fmt: skip
PROBE_ORDER = {**NO_EVENT_ID, "event_id": "evt_3"}  # the load test's probe: the event_id last
API_ORDER = {
    "type": TYPE, "event_id": "event_Cx1", "response_id": "resp_9", "item_id": "item_7",
    "output_index": 0, "content_index": 0, "delta": AUDIO,
}  # fmt: skip


@pytest.mark.parametrize(
    "event",
    [
        API_ORDER,
        {k: v for k, v in API_ORDER.items() if k != "event_id"},  # the simulator's
        {"event_id": "event_1", **{k: v for k, v in API_ORDER.items() if k != "event_id"}},
        {"type": TYPE, "response_id": "resp_9", "item_id": "item_7", "delta": AUDIO},
        {**API_ORDER, "output_index": 12, "delta": "AAAA"},
        PROBE_ORDER,
        {**NO_EVENT_ID, "event_id": "e" * 128},
    ],
)
def test_reads_the_compact_forms(event: dict[str, Any]) -> None:
    message = compact(event)
    parsed = json.loads(message)
    assert audio_delta(message) == (parsed["item_id"], parsed["response_id"], parsed["delta"])


@pytest.mark.parametrize(
    "message",
    [
        json.dumps(API_ORDER).encode(),  # whitespace: json.loads decides
        compact({**API_ORDER, "obfuscation": "x"}),  # another field
        compact({k: v for k, v in API_ORDER.items() if k != "item_id"}),
        compact({k: v for k, v in API_ORDER.items() if k != "response_id"}),
        compact({**API_ORDER, "delta": ""}),
        compact({**API_ORDER, "delta": "AA AA"}),  # not base64: the general path decides
        compact({**API_ORDER, "item_id": "item/7"}),
        compact({**API_ORDER, "item_id": ""}),
        compact({**API_ORDER, "output_index": 1.5}),
        compact({**API_ORDER, "output_index": -1}),
        compact({**API_ORDER, "type": "response.output_audio.done"}),
        compact(API_ORDER).replace(b"AAEC", b"\\u0041EC", 1),  # an escape
        compact(API_ORDER).replace(b'"item_id":"item_7"', b'"item_id":"item_7","item_id":"item_8"'),
        compact(API_ORDER)[:-2] + b'","event_id":"evt_2"}',  # two event_ids
        b'{"event_id":"e1",' + compact(PROBE_ORDER)[1:],  # two event_ids, one first, one last
        compact(PROBE_ORDER) + b"x",  # anything after the event_id tail
        compact(PROBE_ORDER) + b"\n",
        compact(NO_EVENT_ID)[:-1] + b"x",  # the delta's quote, then not "}"
        compact({**NO_EVENT_ID, "event_id": "e" * 129}),
        compact({**NO_EVENT_ID, "event_id": ""}),
        compact({"event_id": "e1", **NO_EVENT_ID, "event_id2": "x"}),
        compact({**NO_EVENT_ID, "event_id": "evt 3"}),
        compact(PROBE_ORDER)[:-1] + b',"x":1}',
        compact(API_ORDER)[:-1],  # not JSON
        compact(API_ORDER)[:-2] + b'"}x',
        compact(API_ORDER) + b"\n",
        b"",
    ],
)
def test_steps_aside_for_anything_else(message: bytes) -> None:
    assert audio_delta(message) is None


_key = st.sampled_from(
    ["type", "event_id", "response_id", "item_id", "output_index", "content_index", "delta", "x"]
)
_value = st.one_of(
    st.sampled_from([TYPE, "resp_1", "item_1", "AAAA", AUDIO, "", "a b", 'q"', "\\"]),
    st.integers(min_value=-3, max_value=10**10), st.floats(allow_nan=False), st.none(), st.booleans(),
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    pairs=st.lists(st.tuples(_key, _value), max_size=8), head=st.booleans(),
    tail=st.sampled_from([b"", b"", b"x", b"\n", b"}"]),
)  # fmt: skip
def test_never_disagrees_with_json(pairs: list[tuple[str, Any]], head: bool, tail: bytes) -> None:
    """Duplicate keys, any order, odd values, bytes after the object: when the fast path reads
    a message, json.loads reads it too, with no key twice, and the general path relays the same
    three strings from it."""
    fields = [("type", TYPE), *pairs] if head else pairs
    message = ("{" + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in fields) + "}").encode() + tail
    fast = audio_delta(message)
    if fast is not None:
        keys = [k for k, _ in json.loads(message, object_pairs_hook=lambda kv: kv)]
        assert len(keys) == len(set(keys))
        parsed = json.loads(message)
        assert parsed["type"] == TYPE
        general = _audio_fast(parsed)
        assert general is not None and (general.item_id, general.reply_id, general.audio) == fast


def test_never_backtracks() -> None:
    assert repeats(_HEAD.pattern) == {"POSSESSIVE_REPEAT"}
    assert repeats(_EVENT_TAIL.pattern) == {"POSSESSIVE_REPEAT"}
    long = compact({**API_ORDER, "delta": "A" * 60_000})
    assert audio_delta(long) == ("item_7", "resp_9", "A" * 60_000)
    assert audio_delta(long[:-2] + b'x"}') is not None  # still base64 letters
    assert audio_delta(long[:-2] + b'!"}') is None
    assert audio_delta(long.replace(b'"item_id":"item_7"', b'"item_id":"' + b"i" * 60_000 + b'"')) is None


def test_every_fast_path_steps_aside_on_an_interpreter_with_broken_possessive_repeats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CPython 3.11.0–3.11.4 matched ``(?:ab?c)*+`` against ``a``: there a frame json.loads
    rejects (an empty event_id right after the type) was read as a delta. On such an
    interpreter the fast paths' expressions match nothing; this one is not such."""
    from infra import possessive
    from responder.engines.realtime import delta_frame
    from responder.transports.twilio import frames

    assert possessive.SOUND  # the fast paths are in use under test
    media = '{"event":"media","sequenceNumber":"3","media":{"track":"inbound","chunk":"2",' \
        '"timestamp":"40","payload":"AAAA"},"streamSid":"MZ1"}'  # fmt: skip
    mark = '{"event":"mark","streamSid":"MZ1","mark":{"name":"m12"}}'
    assert audio_delta(compact(API_ORDER)) and frames.media_payload(media) == "AAAA"
    assert frames.mark_name(mark) == "m12"
    monkeypatch.setattr(possessive, "SOUND", False)
    try:  # the modules as they are built on such an interpreter
        importlib.reload(frames)
        importlib.reload(delta_frame)
        assert delta_frame.audio_delta(compact(API_ORDER)) is None
        assert frames.media_payload(media) is None and frames.mark_name(mark) is None
    finally:
        monkeypatch.undo()
        importlib.reload(frames)
        importlib.reload(delta_frame)
    assert frames.media_payload(media) == "AAAA"


def test_the_load_tests_probe_writes_deltas_the_fast_path_reads() -> None:
    """The load test measures the fast path only if its probe's deltas take it (they did not,
    with the event_id last, until 2026-12-04)."""
    from simulator.probe import delta_head, delta_tail

    message = (delta_head("resp_1", "item_2") + AUDIO + delta_tail("evt_3")).encode()
    assert json.loads(message)["event_id"] == "evt_3"
    assert audio_delta(message) == ("item_2", "resp_1", AUDIO)
