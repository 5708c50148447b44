"""Builds the Realtime GA session configuration (``session.update`` → ``session``)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from infra.settings import Settings
from responder.core.actions import ACTION_TOOL_DEFS
from responder.core.tools import SUPERVISOR_TOOL_DEF

INSTRUCTIONS_DIR = Path(__file__).resolve().parents[2] / "instructions"  # responder/instructions

PCMU: dict[str, Any] = {"type": "audio/pcmu"}
PCM24K: dict[str, Any] = {"type": "audio/pcm", "rate": 24000}


@cache
def load_instructions(name: str = "responder") -> str:
    """The responder prompt, loaded once from ``responder/instructions/<name>.md``."""
    return (INSTRUCTIONS_DIR / f"{name}.md").read_text(encoding="utf-8")


def turn_detection(settings: Settings) -> dict[str, Any]:
    common = {"create_response": True, "interrupt_response": True}
    if settings.turn_detection == "server_vad":
        return {
            "type": "server_vad",
            "silence_duration_ms": settings.vad_silence_ms,
            "prefix_padding_ms": 300,
            **common,
        }
    return {"type": "semantic_vad", "eagerness": settings.vad_eagerness, **common}


def build_session(
    settings: Settings,
    *,
    audio_format: dict[str, Any] | None = PCMU,
    instructions: str | None = None,
    extra_tools: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The ``session`` object of a ``session.update`` for one call.

    ``audio_format`` None leaves the format to the call (SIP and WebRTC negotiate their own codec).
    """
    audio_input: dict[str, Any] = {
        "transcription": {"model": settings.transcription_model, "language": settings.language},
        "turn_detection": turn_detection(settings),
    }
    if settings.noise_reduction != "off":
        audio_input["noise_reduction"] = {"type": settings.noise_reduction}
    audio_output: dict[str, Any] = {"voice": settings.voice, "speed": 1.0}
    if audio_format is not None:
        audio_input["format"] = audio_output["format"] = audio_format
    return {
        "type": "realtime",
        "model": settings.realtime_model,
        "instructions": instructions if instructions is not None else load_instructions(),
        "output_modalities": ["audio"],
        "audio": {
            "input": audio_input,
            "output": audio_output,
        },
        "tools": [SUPERVISOR_TOOL_DEF, *ACTION_TOOL_DEFS, *(extra_tools or [])],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
    }
