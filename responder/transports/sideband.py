"""Calls whose audio never passes through this service: OpenAI SIP and browser WebRTC.

The caller's audio flows between the caller and OpenAI; this service attaches a *sideband*
Realtime WebSocket to the call (``?call_id=rtc_…``) and runs it like the phone path
(:func:`responder.transports.runner.run_call`): tools, history, decisions, hold lines,
fallbacks, call actions.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import structlog
from openai import NotFoundError
from structlog.typing import FilteringBoundLogger

from responder.core.engine import EngineName
from responder.engines.live.session import build_live_session
from responder.engines.realtime.session import build_session
from responder.runtime.admission import Ticket
from responder.runtime.services import Services
from responder.transports.openai_calls import OpenAICallActions
from responder.transports.runner import CallRun, run_call, sideband_opener

log = structlog.get_logger("sideband")
SHUTDOWN_HANGUP_S = 2.0


class NoAudioLink:
    """The caller link of a sideband call: OpenAI plays audio to the caller and handles barge-in."""

    async def send_audio(self, b64_audio: str, mark: str | None) -> None:
        return None

    async def send_mark(self, mark: str) -> None:
        return None

    async def clear_audio(self) -> None:
        return None

    def send_audio_now(self, b64_audio: str, mark: Callable[[], str | None]) -> bool:
        return False  # (a sideband carries no audio)

    def clear_now(self) -> bool:
        return False


def sideband_session(services: Services) -> dict[str, object]:
    """The session config for SIP accept and WebRTC create: the call negotiates its own codec."""
    return build_session(services.settings, audio_format=None)


def live_accept_session(services: Services) -> dict[str, Any]:
    """GPT-Live: ``client.live.sessions.accept``'s ``session`` (SIP negotiates the codec)."""
    return {"type": "live", **build_live_session(services.settings, audio_format=None)}


def live_media_session(services: Services) -> dict[str, Any]:
    """GPT-Live: ``client.live.create``'s ``session`` for a browser's WebRTC offer."""
    return build_live_session(services.settings, audio_format=None)


async def run_sideband_call(
    services: Services, call_id: str, *, transport: str, caller: str, ticket: Ticket, refer_uri: str | None,
    engine: EngineName = "realtime",
) -> None:  # fmt: skip
    """Attach to ``call_id`` and serve it until it ends; always releases ``ticket``."""
    clog = log.bind(call_id=call_id, transport=transport)
    actions = OpenAICallActions(services.realtime_client, call_id, transport, refer_uri, engine)
    run = CallRun(None)
    try:
        await services.history.start_call(call_id, transport=transport, caller=caller, engine=engine)
        clog.info("call.started", transport=transport, engine=engine)
        opener = sideband_opener(services, call_id, engine, sideband_session(services), clog)
        config = services.controller_config(transport=transport, sideband=True)
        # a dropped sideband is not re-attached (yet): the call ends with it
        run = await run_call(
            services, call_id, opener, NoAudioLink(), config, actions=actions, log=clog,
            caller_connected=lambda: False, reconnect=False,
        )  # fmt: skip
        if run.error is not None:
            # Nobody would answer the model's tool calls: end the call rather than leave the
            # caller with a responder that cannot reach the supervisor.
            await _hang_up_quietly(actions, clog, reason="realtime_failed")
        elif run.controller is not None and run.controller.action_runner.record is None:
            # The sideband closed without a transfer or hang-up of ours: usually the caller
            # hung up (404, quietly ignored); if the socket merely dropped, end the call.
            await _hang_up_quietly(actions, clog, reason="sideband_closed")
    except Exception as exc:  # the call's record could not be started
        clog.error("call.realtime_failed", error=repr(exc))
        await _hang_up_quietly(actions, clog, reason="realtime_failed")
    except asyncio.CancelledError:
        # This instance is shutting down: like a Twilio stream whose socket closes, the call
        # ends rather than going on with nobody answering the model's tool calls.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(SHUTDOWN_HANGUP_S):
                await _hang_up_quietly(actions, clog, reason="shutdown")
                if run.controller is None:
                    await services.history.set_meta(call_id, status="ended", ended_at=time.time())
        raise
    finally:
        ticket.release()  # first: nothing below (a cancelled close) may keep the slot taken
        if run.controller is not None:
            await run.controller.close()


async def _hang_up_quietly(actions: OpenAICallActions, clog: FilteringBoundLogger, reason: str) -> None:
    try:
        await actions.hang_up()
        clog.info("call.hung_up", reason=reason)
    except NotFoundError:
        pass  # the caller is already gone
    except Exception as exc:
        clog.warning("call.hangup_failed", error=repr(exc))
