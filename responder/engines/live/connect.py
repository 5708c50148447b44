"""Opening GPT-Live sessions: the primary WebSocket (``session.start`` sent by the engine) and
the sideband of a session OpenAI carries (SIP accepted, WebRTC created)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from openai import AsyncOpenAI
from structlog.typing import FilteringBoundLogger

from responder.engines.live import protocol
from responder.engines.live.delegations import MAX_RUNNING_DEFAULT
from responder.engines.live.engine import SIDEBAND_BYTES_PER_MS, START_TIMEOUT_S, LiveEngine
from responder.engines.realtime.connection import RealtimeConnection
from responder.engines.realtime.model_socket import CONNECT_OPTIONS


@asynccontextmanager
async def open_live_engine(
    client: AsyncOpenAI, call_id: str, session: dict[str, Any], log: FilteringBoundLogger, *,
    bytes_per_ms: float, recovery_s: float, start_timeout_s: float = START_TIMEOUT_S,
    max_running: int = MAX_RUNNING_DEFAULT,
) -> AsyncIterator[LiveEngine]:  # fmt: skip
    """A new GPT-Live session on the primary WebSocket (``session.start`` on :meth:`start`).
    The SDK's own reconnect stays off: a new socket is a new session, which the controller
    resumes itself."""
    async with client.live.connect(websocket_connection_options=CONNECT_OPTIONS) as conn:
        socket = RealtimeConnection(conn, call_id, frame_audio=protocol.audio_append)
        yield LiveEngine(socket, session, log, bytes_per_ms=bytes_per_ms, recovery_s=recovery_s,
                         start_timeout_s=start_timeout_s, max_running=max_running)  # fmt: skip


@asynccontextmanager
async def open_live_sideband(
    client: AsyncOpenAI, session_id: str, log: FilteringBoundLogger, *, recovery_s: float,
    max_running: int = MAX_RUNNING_DEFAULT,
) -> AsyncIterator[LiveEngine]:
    """The sideband of a Live session OpenAI carries (SIP accepted, WebRTC created)."""
    async with client.live.sideband.connect(
        session_id=session_id, websocket_connection_options=CONNECT_OPTIONS
    ) as conn:
        socket = RealtimeConnection(conn, session_id, frame_audio=protocol.audio_append)
        yield LiveEngine(socket, {}, log, bytes_per_ms=SIDEBAND_BYTES_PER_MS, recovery_s=recovery_s,
                         sideband=True, max_running=max_running)  # fmt: skip
