"""A suite runner wired from settings, for the command line (``responder policies test``, the gate
of ``policies publish`` / ``import``): the supervisor exactly as the service builds it — model,
API mode, prompt, tools over ``policies_dir``'s data, rounds, deadline, inline mode — and, with
no ``OPENAI_API_KEY``, the local simulator as its text model (and as the judge)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from infra.settings import Settings
from simulator.entry import SIMULATOR_API_KEY, start_simulator
from supervisor.policies import PolicyLibrary
from supervisor.policy_tests.judge import ModelJudge
from supervisor.policy_tests.runner import MemoryHistory, SuiteRunner
from supervisor.setup import supervisor_from_settings

# The simulator's text model takes its timing from a scenario; this one adds no delay.
SIMULATOR_SCENARIO = "returns"


@contextlib.asynccontextmanager
async def runner_from_settings(
    settings: Settings, *, judge: bool = False, concurrency: int = 8
) -> AsyncIterator[SuiteRunner]:
    simulator = None
    api_key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    base_url = settings.openai_base_url
    if api_key is None:
        simulator = await start_simulator(SIMULATOR_SCENARIO, 1.0)
        api_key, base_url = SIMULATOR_API_KEY, simulator.api_base_url
    supervisor = supervisor_from_settings(
        settings, MemoryHistory(), PolicyLibrary([]), base_url=base_url, api_key=api_key
    )
    runner = SuiteRunner(
        supervisor,
        concurrency=concurrency,
        judge=ModelJudge(supervisor.model) if judge else None,
        simulator=simulator is not None,
    )
    try:
        yield runner
    finally:
        await supervisor.aclose()
        if simulator is not None:
            await simulator.close()
