"""Builds the GPT-Live ``session.start`` configuration (``openai.types.live.SessionConfig``)."""

from __future__ import annotations

from typing import Any, Final

from infra.settings import Settings
from responder.engines.realtime.session import load_instructions

PCMU_8K: Final[dict[str, Any]] = {"type": "audio/pcmu", "rate": 8000}
PCM_24K: Final[dict[str, Any]] = {"type": "audio/pcm", "rate": 24000}


def live_format(realtime_format: dict[str, Any]) -> dict[str, Any]:
    """The Live audio format for a transport's (Realtime-style) format: μ-law passes through."""
    if realtime_format.get("type") == "audio/pcmu":
        return dict(PCMU_8K)
    if realtime_format.get("type") == "audio/pcma":
        return {"type": "audio/pcma", "rate": 8000}
    return dict(PCM_24K)


def build_live_session(settings: Settings, *, audio_format: dict[str, Any] | None) -> dict[str, Any]:
    """The ``session`` of ``session.start``: the Live model, the frontend prompt, client
    delegation (the service answers every delegation with the supervisor), the call's audio
    format (primary WebSocket only; None for SIP/WebRTC, which negotiate their own)."""
    audio: dict[str, Any] = {"output": {"voice": settings.voice}}
    if audio_format is not None:
        audio["format"] = live_format(audio_format)
    return {
        "model": settings.live_model,
        "instructions": load_instructions("live"),
        "audio": audio,
        "delegation": {
            "type": "client",
            "acknowledgement_delay_ms": settings.live_acknowledgement_delay_ms,
        },
    }
