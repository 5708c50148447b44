"""The profile summary's parts: each sample counted once, in the first part its stack matches."""

from __future__ import annotations

from pathlib import Path

from benchmarks.load.collapse import summarise


def test_a_sample_is_counted_in_the_first_part_its_stack_names(tmp_path: Path) -> None:
    stacks = tmp_path / "stacks.txt"
    stacks.write_text(
        "run_app (aiohttp/web.py:502);relay_now (responder/core/agent_audio.py:47) 6\n"
        # a decision that writes to Redis is the supervisor's, not the history's
        "run_app (aiohttp/web.py:502);Supervisor.decide (supervisor/agent.py:128);"
        "Redis.execute_command (redis/asyncio/client.py:974) 3\n"
        "run_app (aiohttp/web.py:502);CallHistory.add_item (callrecord/history.py:250) 1\n"
        "not a sample line\n",
        encoding="utf-8",
    )
    summary = summarise(stacks, top=3)
    assert summary.startswith("10 samples")
    parts = summary.split("parts of the service:\n")[1].split("\n\n")[0].splitlines()
    assert [line.split(maxsplit=1) for line in parts] == [
        ["60.0%", "relay model→caller"],
        ["30.0%", "supervisor decisions"],
        ["10.0%", "history in Redis"],
    ]
