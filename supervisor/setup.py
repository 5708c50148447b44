"""Building the in-process supervisor from settings: shared by the voice service (responder/server/app.py) and
the supervisor service (supervisor/service.py), so both answer with the same configuration."""

from __future__ import annotations

from callrecord.history import CallHistory
from infra.settings import Settings
from supervisor.agent import Supervisor, build_supervisor
from supervisor.policies import PolicyLibrary


def supervisor_key(settings: Settings, openai_key: str) -> str:
    """The supervisor's key. The OpenAI key is never sent to a different supervisor host."""
    if settings.supervisor_api_key is not None:
        return settings.supervisor_api_key.get_secret_value()
    if settings.supervisor_base_url and not settings.uses_simulator:
        return "unused"  # a self-hosted OpenAI-compatible server (vLLM, Ollama) needs none
    return openai_key


def supervisor_from_settings(
    settings: Settings, history: CallHistory, library: PolicyLibrary, *, base_url: str, api_key: str
) -> Supervisor:
    """The supervisor over ``library`` (kept current by PolicySync). ``base_url``/``api_key``:
    the OpenAI endpoint in use (the simulator's in keyless mode)."""
    return build_supervisor(
        history=history,
        base_url=settings.supervisor_base_url or base_url,
        api_key=supervisor_key(settings, api_key),
        model=settings.supervisor_model,
        api=settings.supervisor_api,
        policies_dir=settings.policies_dir,
        max_rounds=settings.supervisor_max_rounds,
        deadline_s=settings.supervisor_deadline_s,
        history_tokens=settings.supervisor_history_tokens,
        library=library,
        inline_max_chars=settings.policies_inline_max_chars,
        otel=settings.otel,
    )
