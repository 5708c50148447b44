"""SDP for the simulator's WebRTC calls: read an offer's media sections, write a plausible answer.

No media ever flows (the simulator has no RTP stack): the answer only has to be well-formed
and match the offer's sections (mids, bundle, an offered Opus payload type, a data channel)
so that a browser's ``setRemoteDescription`` accepts it. ICE then simply never connects.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

_ANSWERED = frozenset({"audio", "application"})
_OPUS = re.compile(r"^a=rtpmap:(\d+) opus/48000", re.IGNORECASE)


class SdpError(ValueError):
    """The offer is not an SDP session description."""


@dataclass(frozen=True)
class MediaSection:
    kind: str  # "audio", "video", "application"
    mid: str
    opus_pt: int | None


def parse_offer(sdp: str) -> list[MediaSection]:
    """The media sections of an offer; raises :class:`SdpError` when it is not SDP."""
    text = sdp.lstrip("\ufeff")
    if not text.startswith("v=0"):
        raise SdpError("The SDP offer must start with 'v=0'.")
    sections: list[MediaSection] = []
    kind, mid, opus = "", "", None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            if kind:
                sections.append(MediaSection(kind, mid or str(len(sections)), opus))
            kind, mid, opus = line[2:].split(" ", 1)[0], "", None
        elif line.startswith("a=mid:"):
            mid = line[6:]
        elif kind and opus is None and (match := _OPUS.match(line)):
            opus = int(match.group(1))
    if kind:
        sections.append(MediaSection(kind, mid or str(len(sections)), opus))
    if not any(s.kind == "audio" for s in sections):
        raise SdpError("The SDP offer has no audio media section.")
    return sections


def answer_for(sections: list[MediaSection]) -> str:
    """An answer SDP (CRLF line endings) accepting audio (Opus) and a data channel."""
    ufrag, pwd = secrets.token_hex(4), secrets.token_hex(12)
    fingerprint = ":".join(f"{b:02X}" for b in secrets.token_bytes(32))
    session_id = secrets.randbelow(2**62)
    lines = [
        "v=0",
        f"o=- {session_id} 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE " + " ".join(s.mid for s in sections if s.kind in _ANSWERED),
        "a=msid-semantic: WMS *",
    ]
    common = [
        "c=IN IP4 0.0.0.0",
        f"a=ice-ufrag:{ufrag}",
        f"a=ice-pwd:{pwd}",
        f"a=fingerprint:sha-256 {fingerprint}",
        "a=setup:active",
    ]
    for section in sections:
        if section.kind == "audio":
            pt = section.opus_pt if section.opus_pt is not None else 111
            lines += [f"m=audio 9 UDP/TLS/RTP/SAVPF {pt}", *common, f"a=mid:{section.mid}", "a=sendrecv"]
            lines += ["a=rtcp-mux", f"a=rtpmap:{pt} opus/48000/2", f"a=fmtp:{pt} minptime=10;useinbandfec=1"]
        elif section.kind == "application":
            lines += ["m=application 9 UDP/DTLS/SCTP webrtc-datachannel", *common, f"a=mid:{section.mid}"]
            lines += ["a=sctp-port:5000", "a=max-message-size:262144"]
        else:  # rejected section (port 0), as an answerer does for media it does not take
            lines += [f"m={section.kind} 0 UDP/TLS/RTP/SAVPF 0", "c=IN IP4 0.0.0.0", f"a=mid:{section.mid}"]
    return "\r\n".join(lines) + "\r\n"
