"""aiohttp application factory: routes, startup and cleanup (Redis, simulator, supervisor)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from callrecord.history_buffer import BufferedCallHistory
from infra.health import healthz, not_ready, readiness
from infra.http import http_guard, server_options
from infra.metrics import HISTORY_BUFFERED, metrics_handler
from infra.redis_server import connect_redis
from infra.settings import Settings
from responder.core.contract import finish_kept_tasks
from responder.engines.realtime.connection import make_client
from responder.runtime.admission import CallAdmission
from responder.runtime.handshake import PendingSockets
from responder.runtime.services import SERVICES, Services
from responder.runtime.supervisor_client import RemoteSupervisor
from responder.server.loop_monitor import loop_monitor
from responder.server.warmup import warm_up_sdk, warm_up_text_model
from responder.transports.sip import SIP_WEBHOOK_PATH, add_sip_routes
from responder.transports.twilio.control import close_twilio_client, make_twilio_client
from responder.transports.twilio.transport import MEDIA_PATH, VOICE_PATH, add_twilio_routes
from responder.transports.webrtc import add_webrtc_routes
from responder.transports.websocket import add_websocket_routes
from responder.web.call import add_call_page_routes
from responder.web.editor_routes import POLICIES, PolicyServices, add_editor_routes
from responder.web.editor_suites import add_suite_routes
from responder.web.live import add_live_routes
from responder.web.trace_routes import add_trace_routes
from simulator.entry import SIMULATOR_API_KEY, SimulatorHandle, start_simulator
from supervisor.policy_sync import start_policies
from supervisor.setup import supervisor_from_settings, supervisor_key

log = structlog.get_logger("app")


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[http_guard(settings.http_read_timeout_s)],  # undecodable headers, slow bodies
        handler_args=server_options(settings.http_read_timeout_s),  # slow headers, for every runner
    )
    app.cleanup_ctx.append(_lifecycle(settings))
    app.cleanup_ctx.append(loop_monitor)  # responder_event_loop_lag_seconds
    app.on_shutdown.append(_mark_stopping)
    add_twilio_routes(app)
    add_sip_routes(app)
    add_webrtc_routes(app)
    add_editor_routes(app, settings)
    add_suite_routes(app)
    add_websocket_routes(app)
    add_live_routes(app)
    add_call_page_routes(app)
    add_trace_routes(app, settings)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


def _lifecycle(settings: Settings):  # type: ignore[no-untyped-def]
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        simulator: SimulatorHandle | None = None
        simulator_url: str | None = None
        api_key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        base_url, ws_url = settings.openai_base_url, settings.realtime_ws_url()
        if api_key is None:
            simulator = await start_simulator(settings.simulator_scenario, settings.simulator_speed)
            simulator_url = simulator.url
            log.warning(
                "app.simulator_mode",
                reason="no OPENAI_API_KEY: calls go to the local simulator, a test double of the OpenAI API",
                simulator_url=simulator_url,
                scenario=settings.simulator_scenario,
            )
            api_key, base_url, ws_url = SIMULATOR_API_KEY, simulator.api_base_url, None
        redis = await connect_redis(settings.redis_url, settings.redis_data_dir)
        history = BufferedCallHistory(  # a Redis outage mid-call: writes buffered, then flushed
            redis.client, prefix=settings.redis_prefix, ttl_s=settings.history_ttl_s,
            on_buffered=HISTORY_BUFFERED.set, max_items=settings.max_items_per_call,
        )  # fmt: skip
        policy_sync = await start_policies(redis.client, settings.redis_prefix, settings.policies_dir)
        # in-process: calls' supervisor unless RESPONDER_SUPERVISOR_URL is set; always the
        # policy editor's "try it" (drafts are only here)
        supervisor = supervisor_from_settings(
            settings, history, policy_sync.library, base_url=base_url, api_key=api_key
        )
        app[POLICIES] = PolicyServices(policy_sync, supervisor)
        remote = RemoteSupervisor.from_settings(settings, history) if settings.supervisor_url else None
        client = make_client(api_key, base_url, ws_url)
        # the SDK's first uses stall the event loop for tens of ms: pay them now, not mid-call
        warmed = {**warm_up_sdk(client), "text_model": await warm_up_text_model(settings.supervisor_api)}
        log.info("app.sdk_warmed_up", ms=warmed)
        twilio_client = make_twilio_client(settings)
        app[SERVICES] = Services(
            settings=settings,
            redis=redis,
            history=history,
            realtime_client=client,
            decide=remote.decide if remote is not None else supervisor.decide,
            simulator_url=simulator_url,
            simulator=simulator,
            admission=CallAdmission(
                settings.max_concurrent_calls, settings.call_rate_per_minute, settings.call_rate_burst
            ),
            twilio_client=twilio_client,
            pending_sockets=PendingSockets(settings.pending_sockets_per_client, settings.pending_sockets_max),
            **_view_secret(settings),
        )
        external = settings.external_url()
        if settings.public_url is None and settings.host in ("0.0.0.0", "::"):
            log.warning(
                "app.public_url_missing",
                reason="set RESPONDER_PUBLIC_URL: Twilio signatures are checked against it",
            )
        log.info(
            "app.ready",
            twilio_voice_webhook=external + VOICE_PATH,
            twilio_media_stream=external.replace("http", "ws", 1) + MEDIA_PATH,
            realtime_model=settings.realtime_model,
            supervisor_model=settings.supervisor_model,
            supervisor_api=settings.supervisor_api,
            supervisor_service=settings.supervisor_url or "in-process",
            redis=redis.url if redis.embedded else "REDIS_URL",
            twilio_signature_check=settings.twilio_auth_token is not None,
            sip_webhook=external + SIP_WEBHOOK_PATH,
            sip_signature_check=settings.openai_webhook_secret is not None,
            max_concurrent_calls=settings.max_concurrent_calls,
        )
        try:
            yield
        finally:
            services = app[SERVICES]  # after a drain, each wait is bounded by its exit deadline
            await _finish_calls(services, services.shutdown_wait_s(5.0))
            services.reservations.release_all()
            await finish_kept_tasks(services.shutdown_wait_s(settings.supervisor_deadline_s + 2.0))
            await close_twilio_client(twilio_client)
            await client.close()
            await supervisor.aclose()
            if remote is not None:
                await remote.aclose()
            await policy_sync.stop()
            # a last flush of writes an outage buffered
            await history.aclose(timeout_s=services.shutdown_wait_s(3.0, floor_s=0.2))
            await redis.close()
            if simulator is not None:
                await simulator.close()

    return lifecycle


async def _mark_stopping(app: web.Application) -> None:
    """Shutdown cuts the connections of live calls next: they end as ``service_shutdown``."""
    services = app.get(SERVICES)
    if services is not None:
        services.stopping = True


async def _finish_calls(services: Services, timeout_s: float = 5.0) -> None:
    """Sideband calls (SIP, WebRTC) have no request to end them: cancel and wait at shutdown.

    A cancellation can be lost (Python 3.11's ``asyncio.wait_for``, used inside redis-py,
    swallows one that races with its result), so a call still running a moment later is
    cancelled again, until the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    pending = set(services.call_tasks)
    while pending and loop.time() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(2.5, max(0.0, deadline - loop.time())))
    if pending:
        log.warning("app.calls_not_finished", calls=len(pending))


def _view_secret(settings: Settings) -> dict[str, bytes]:
    """The configured live-transcript signing secret; a random one per process otherwise."""
    if settings.session_secret is None or not settings.session_secret.get_secret_value():
        return {}
    return {"view_secret": settings.session_secret.get_secret_value().encode()}


_supervisor_key = supervisor_key  # moved to supervisor/setup.py


async def readyz(request: web.Request) -> web.Response:
    services = request.app.get(SERVICES)
    if services is None:
        return not_ready("starting")
    policies = request.app.get(POLICIES)
    loaded = len(policies.sync.library.labels()) if policies is not None else 0
    simulator = services.simulator_url is not None
    return await readiness(services.redis.client, loaded, draining=services.draining, simulator=simulator)
