"""What a simulated Twilio call produces and needs: its report, errors, and the TwiML it follows."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field


class CallerError(RuntimeError):
    """The simulated call could not be placed or did not go as the protocol requires."""


class CallerTimeout(CallerError):
    """The call did not finish within its overall time limit."""


@dataclass
class CallerReport:
    call_sid: str
    stream_sid: str
    audio_ms_received: float = 0.0
    audio_ms_played: float = 0.0
    marks_echoed: int = 0
    clears_received: int = 0
    frames_sent: int = 0
    malformed_frames: int = 0
    duration_s: float = 0.0
    hung_up_by_service: bool = False
    # Set when a Twilio REST update took the call off its stream (see twilio_rest.CallEnd):
    # "completed", "canceled", "dial:+1…", "twiml", "redirect:<url>".
    ended_by_rest: str | None = None
    custom_parameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StreamInstructions:
    url: str
    parameters: dict[str, str]


def parse_twiml(text: str) -> StreamInstructions:
    """The ``<Connect><Stream url>`` (and its ``<Parameter>``s) of a TwiML answer."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise CallerError(f"the voice webhook did not answer TwiML: {exc}") from exc
    stream = root.find("./Connect/Stream")
    if root.tag != "Response" or stream is None or not stream.get("url"):
        raise CallerError(f"the TwiML has no <Connect><Stream url=…>: {text[:300]!r}")
    params = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    return StreamInstructions(url=stream.get("url", ""), parameters=params)
