from __future__ import annotations

import pytest
from openai.types.realtime import SessionUpdateEvent

from infra.settings import Settings
from responder.core.tools import SUPERVISOR_TOOL
from responder.engines.realtime.session import PCM24K, PCMU, build_session, load_instructions


@pytest.mark.parametrize("turn_detection", ["semantic_vad", "server_vad"])
@pytest.mark.parametrize("fmt", [PCMU, PCM24K])
def test_session_update_validates_against_sdk_type(turn_detection: str, fmt: dict) -> None:
    settings = Settings(turn_detection=turn_detection, vad_silence_ms=700)
    session = build_session(settings, audio_format=fmt)
    event = SessionUpdateEvent.model_validate({"type": "session.update", "session": session})
    dumped = event.model_dump(exclude_none=True)["session"]
    assert dumped["audio"]["input"]["format"] == fmt
    assert dumped["audio"]["output"]["format"] == fmt
    detection = dumped["audio"]["input"]["turn_detection"]
    assert detection["type"] == turn_detection
    assert detection["create_response"] and detection["interrupt_response"]
    if turn_detection == "server_vad":
        assert detection["silence_duration_ms"] == 700


def test_supervisor_tool_is_exactly_the_documented_signature() -> None:
    session = build_session(Settings())
    tool, escalate, end_call = session["tools"]
    assert [escalate["name"], end_call["name"]] == ["escalate_to_human", "end_call"]
    for action in (escalate, end_call):
        assert action["parameters"]["required"] == ["reason"]
    assert tool["name"] == SUPERVISOR_TOOL == "getNextResponseFromSupervisor"
    params = tool["parameters"]
    assert list(params["properties"]) == ["relevantContextFromLastUserMessage"]
    assert params["properties"]["relevantContextFromLastUserMessage"]["type"] == "string"
    assert params["required"] == ["relevantContextFromLastUserMessage"]
    assert params["additionalProperties"] is False


def test_sideband_session_leaves_the_codec_to_the_call() -> None:
    session = build_session(Settings(), audio_format=None)
    event = SessionUpdateEvent.model_validate({"type": "session.update", "session": session})
    dumped = event.model_dump(exclude_none=True)["session"]
    assert "format" not in dumped["audio"]["input"] and "format" not in dumped["audio"]["output"]
    assert dumped["audio"]["output"]["voice"] == "marin"


def test_no_beta_names_in_session() -> None:
    text = repr(build_session(Settings()))
    for beta in ("g711_ulaw", "input_audio_format", "'modalities'", "temperature"):
        assert beta not in text


def test_responder_prompt_has_the_guide_sections() -> None:
    prompt = load_instructions()
    for heading in (
        "# Role & Objective",
        "# Personality & Tone",
        "# Tools",
        "# Instructions",
        "# Conversation Flow",
        "# Safety & Escalation",
        "## Variety",
        "## Unclear audio",
    ):
        assert heading in prompt
    assert "getNextResponseFromSupervisor" in prompt
    assert '"One moment."' in prompt


def test_standard_env_names_and_ws_url_derivation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", "https://llm.internal.example/v1")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/2")
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "tok")
    monkeypatch.setenv("RESPONDER_HOLD_DELAY_S", "2.5")
    s = Settings()
    assert s.openai_api_key is not None and s.openai_api_key.get_secret_value() == "sk-test"
    assert s.realtime_ws_url() == "wss://llm.internal.example/v1"
    assert s.redis_url == "redis://cache:6379/2"
    assert s.hold_delay_s == 2.5
    assert "sk-test" not in repr(s)
    monkeypatch.setenv("RESPONDER_REALTIME_URL", "wss://rt.example/v1")
    assert Settings().realtime_ws_url() == "wss://rt.example/v1"


def test_openai_key_never_goes_to_another_supervisor_host() -> None:
    from responder.server.app import _supervisor_key

    s = Settings(openai_api_key="sk-real", supervisor_base_url="http://vllm.internal:8000/v1")
    assert _supervisor_key(s, "sk-real") != "sk-real"
    s = Settings(openai_api_key="sk-real", supervisor_base_url="http://vllm:8000/v1", supervisor_api_key="k2")
    assert _supervisor_key(s, "sk-real") == "k2"
    assert _supervisor_key(Settings(openai_api_key="sk-real"), "sk-real") == "sk-real"
