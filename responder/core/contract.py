"""What the call controller and its transports agree on: the caller link, the supervisor
call, the per-call configuration, and the supervisor runs that outlive their call."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from callrecord.decisions import Decision, Trigger
from responder.core.keypad import DTMF_BURST, DTMF_RATE_PER_S
from responder.core.playback import MARK_INTERVAL_MS

# Tasks that outlive their call (a supervisor run whose caller hung up): referenced here so
# that they are not garbage-collected mid-flight.
_KEPT_TASKS: set[asyncio.Task[Any]] = set()


def keep_task(task: asyncio.Task[Any]) -> None:
    """Keep ``task`` referenced until it is done, whether or not its call is still on."""
    _KEPT_TASKS.add(task)
    task.add_done_callback(_KEPT_TASKS.discard)


async def finish_kept_tasks(timeout_s: float) -> None:
    """Shutdown: let supervisor runs that outlived their call record their decisions (bounded)."""
    if _KEPT_TASKS:
        await asyncio.wait(list(_KEPT_TASKS), timeout=timeout_s)


class CallerLink(Protocol):
    """The caller side of a call, as the controller sees it. Implemented by each transport."""

    async def send_audio(self, b64_audio: str, mark: str | None) -> None:
        """Relay a chunk of agent audio, then the mark named ``mark`` if there is one."""

    def send_audio_now(self, b64_audio: str, mark: Callable[[], str | None]) -> bool:
        """:meth:`send_audio` without a coroutine, when the transport can write at once: then
        ``mark()`` names the mark to send after the chunk (called once, only then), and True.
        False: nothing was sent and ``mark`` not called (await :meth:`send_audio`)."""
        ...

    async def send_mark(self, mark: str) -> None:
        """A mark on its own, after the audio already sent (the end of a reply)."""

    async def clear_audio(self) -> None: ...

    def clear_now(self) -> bool:
        """:meth:`clear_audio` without a coroutine, when the transport can write at once: True
        when the clear went out, False when nothing was sent (await :meth:`clear_audio`)."""
        ...


class DecideFn(Protocol):
    def __call__(
        self, call_id: str, context: str, *, user_item_id: str | None = None, trigger: Trigger = "tool_call"
    ) -> Awaitable[Decision]: ...


@dataclass(frozen=True)
class ControllerConfig:
    transcript_wait_s: float = 1.0
    hold_delay_s: float = 3.0
    max_hold_lines: int = 1
    supervisor_deadline_s: float = 10.0
    greeting: bool = True
    bytes_per_ms: float = 8.0  # audio/pcmu 8 kHz
    mark_interval_ms: float = MARK_INTERVAL_MS  # see responder.core.playback
    transport: str = "twilio"
    realtime_model: str = "gpt-realtime"
    sideband: bool = False  # SIP/WebRTC: audio flows between caller and OpenAI, not through us
    remote_ms_per_char: float = 75.0  # sideband: how long a spoken line takes, to let it play out
    dtmf_rate_per_s: float = DTMF_RATE_PER_S  # key presses recorded (see responder.core.keypad)
    dtmf_burst: int = DTMF_BURST
