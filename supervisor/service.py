"""The supervisor as its own HTTP service: ``responder supervisor serve --host --port``.

``POST /v1/decide`` with ``{"call_id", "context", "user_item_id", "deadline_s"?}`` runs the same
:class:`~supervisor.agent.Supervisor` the voice service runs in-process (same Redis history,
same policy set kept current by PolicySync, same settings) and answers the
:class:`~callrecord.decisions.Decision` as JSON. The decision is recorded on the call here,
as in-process. ``deadline_s`` (what is left of the caller's deadline) can only shorten the
configured ``supervisor_deadline_s``.

* Auth: ``Authorization: Bearer <RESPONDER_SUPERVISOR_TOKEN>`` (the scheme in any case, as
  everywhere: :func:`infra.http.bearer_token`), compared in constant time; missing or wrong →
  401 on every path but the three probes below. Without a token the service only starts on a
  loopback address. Header bytes that are not UTF-8 → 400; slow clients are cut off
  (:mod:`infra.http`).
* ``request_id`` (optional; the client sends one per decision, the same on every retry): a
  retried request is answered with the first try's decision instead of deciding (and
  recording) again, see :mod:`supervisor.idempotency`.
* Bad JSON or invalid fields → 400, a body over ``max_body_bytes`` → 413, both as JSON
  ``{"error": {"code", "message"}}``.
* ``GET /healthz`` (process up), ``GET /readyz`` (Redis answers and policies are loaded),
  ``GET /metrics`` (Prometheus): no auth, for probes and scrapers.
"""

from __future__ import annotations

import copy
import hmac
import ipaddress
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from callrecord.decisions import Decision, Trigger
from callrecord.history import CallHistory
from infra.health import healthz, not_ready, readiness
from infra.http import bearer_token, http_guard, server_options
from infra.metrics import REGISTRY, metrics_handler
from infra.redis_server import RedisHandle, connect_redis
from infra.settings import Settings
from simulator.entry import SIMULATOR_API_KEY, SimulatorHandle, start_simulator
from supervisor.agent import Supervisor
from supervisor.idempotency import DecideOnce
from supervisor.observe import observe_decision
from supervisor.policy_sync import PolicySync, start_policies
from supervisor.setup import supervisor_from_settings

log = structlog.get_logger("supervisor_service")

DECIDE_PATH = "/v1/decide"
MIN_TOKEN_CHARS = 16
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})  # probes and scrapers: no token
# a retry of a request still running waits for its decision this long past its own deadline
DEDUPE_WAIT_SLACK_S = 0.2

REQUESTS = Counter(
    "supervisor_service_requests", "Decide requests, by HTTP status", ["status"], registry=REGISTRY
)


_ID_PATTERN = r"^[A-Za-z0-9_.:-]+$"  # call, item and request ids: ids, never text


class DecideRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    call_id: str = Field(min_length=1, max_length=128, pattern=_ID_PATTERN)
    context: str = Field(max_length=16_000)
    user_item_id: str | None = Field(default=None, min_length=1, max_length=128, pattern=_ID_PATTERN)
    trigger: Trigger = "tool_call"
    request_id: str | None = Field(default=None, min_length=1, max_length=128, pattern=_ID_PATTERN)
    deadline_s: float | None = Field(default=None, gt=0, le=600)


@dataclass
class ServiceState:
    settings: Settings
    redis: RedisHandle
    history: CallHistory
    policy_sync: PolicySync
    supervisor: Supervisor
    simulator: SimulatorHandle | None = None  # keyless mode: the text model is this test double
    once: DecideOnce | None = None  # request_id de-duplication


STATE: web.AppKey[ServiceState] = web.AppKey("supervisor_service", ServiceState)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_token(settings: Settings, host: str) -> str | None:
    """The configured token; refuses to run open on a non-loopback address or with a weak one."""
    token = settings.supervisor_token.get_secret_value() if settings.supervisor_token else ""
    if not token:
        if not is_loopback(host):
            raise ValueError(
                f"refusing to serve the supervisor on {host} without RESPONDER_SUPERVISOR_TOKEN "
                "(only a loopback address may run without one)"
            )
        return None
    if len(token) < MIN_TOKEN_CHARS:
        raise ValueError(f"RESPONDER_SUPERVISOR_TOKEN is too short (at least {MIN_TOKEN_CHARS} characters)")
    if any(c.isspace() for c in token) or "REPLACE-ME" in token.upper():
        raise ValueError(
            "RESPONDER_SUPERVISOR_TOKEN holds whitespace or the example's placeholder: set a random value"
        )
    return token


def create_service_app(settings: Settings, host: str | None = None) -> web.Application:
    """The supervisor service; ``host``: the address it will bind (loopback may run tokenless)."""
    token = check_token(settings, host or settings.host)
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[http_guard(settings.http_read_timeout_s), _auth(token)],
        handler_args=server_options(settings.http_read_timeout_s),
    )
    app.cleanup_ctx.append(_lifecycle(settings))
    app.router.add_post(DECIDE_PATH, decide)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    return app


def _error(status: int, code: str, message: str, **headers: str) -> web.Response:
    REQUESTS.labels(status=str(status)).inc()
    body = {"error": {"code": code, "message": message}}
    return web.json_response(body, status=status, headers=headers or None)


def _auth(token: str | None) -> Middleware:
    expected = token.encode() if token else None

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if expected is not None and request.path not in OPEN_PATHS:
            given = (bearer_token(request.headers) or "").encode("utf-8", "surrogateescape")
            if not hmac.compare_digest(given, expected):
                has_auth = "Authorization" in request.headers
                log.warning("supervisor_service.unauthorized", path=request.path[:200], has_auth=has_auth)
                return _error(
                    401, "unauthorized", "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"}
                )
        return await handler(request)

    return middleware


def _lifecycle(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        simulator: SimulatorHandle | None = None
        api_key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        base_url = settings.openai_base_url
        if api_key is None:  # keyless: the text model is the local simulator (a test double)
            simulator = await start_simulator(settings.simulator_scenario, settings.simulator_speed)
            api_key, base_url = SIMULATOR_API_KEY, simulator.api_base_url
            log.warning("supervisor_service.simulator_mode", simulator_url=simulator.url)
        redis = await connect_redis(settings.redis_url, settings.redis_data_dir)
        history = CallHistory(
            redis.client, prefix=settings.redis_prefix, ttl_s=settings.history_ttl_s,
            max_items=settings.max_items_per_call,
        )  # fmt: skip
        policy_sync = await start_policies(redis.client, settings.redis_prefix, settings.policies_dir)
        supervisor = supervisor_from_settings(
            settings, history, policy_sync.library, base_url=base_url, api_key=api_key
        )
        once = DecideOnce(redis.client, settings.redis_prefix)
        app[STATE] = ServiceState(settings, redis, history, policy_sync, supervisor, simulator, once)
        log.info(
            "supervisor_service.ready", model=settings.supervisor_model, api=settings.supervisor_api,
            policies=policy_sync.library.labels(), deadline_s=settings.supervisor_deadline_s,
        )  # fmt: skip
        try:
            yield
        finally:
            await supervisor.aclose()
            await policy_sync.stop()
            await redis.close()
            if simulator is not None:
                await simulator.close()

    return lifecycle


async def decide(request: web.Request) -> web.Response:
    started = time.perf_counter()
    state = request.app.get(STATE)
    if state is None:
        return _error(503, "starting", "the supervisor service is starting")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _error(413, "too_large", f"the body is over {state.settings.max_body_bytes} bytes")
    try:
        body = DecideRequest.model_validate(json.loads(raw))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):  # RecursionError: [[[[…
        log.warning("supervisor_service.bad_request", reason="invalid JSON", bytes=len(raw))
        return _error(400, "invalid_json", "the body is not valid JSON")
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors()})
        log.warning("supervisor_service.bad_request", reason="invalid fields", fields=fields)
        return _error(400, "invalid_request", f"invalid or missing field(s): {', '.join(fields)}")
    supervisor = state.supervisor
    if body.deadline_s is not None and body.deadline_s < supervisor.deadline_s:
        supervisor = copy.copy(supervisor)  # the caller's remaining time: a shorter deadline
        supervisor.deadline_s = body.deadline_s
    with structlog.contextvars.bound_contextvars(call_id=body.call_id):
        once, key = state.once, None
        if once is not None and body.request_id is not None:
            key = once.key(body.call_id, body.request_id)
            earlier = await _earlier_decision(once, key, supervisor.deadline_s)
            if isinstance(earlier, web.Response):
                return earlier
            if earlier is not None:
                REQUESTS.labels(status="200").inc()
                log.bind(call_id=body.call_id).info(
                    "supervisor_service.request_repeated", decision_id=earlier.decision_id,
                    request_id=body.request_id, outcome=earlier.outcome,
                )  # fmt: skip
                return web.json_response(text=earlier.model_dump_json())
        try:
            decision = await supervisor.decide(
                body.call_id, body.context, user_item_id=body.user_item_id, trigger=body.trigger
            )
        except BaseException:  # cancelled (the client hung up): a retry may run it afresh
            if once is not None and key is not None:
                await once.release(key)
            raise
        if once is not None and key is not None:
            await once.finish(key, decision)
        observe_decision(decision)
        REQUESTS.labels(status="200").inc()
        log.bind(call_id=body.call_id).info(
            "supervisor_service.request", decision_id=decision.decision_id, outcome=decision.outcome,
            deadline_s=supervisor.deadline_s, ms=round((time.perf_counter() - started) * 1000, 1),
        )  # fmt: skip
    return web.json_response(text=decision.model_dump_json())


async def _earlier_decision(once: DecideOnce, key: str, deadline_s: float) -> Decision | web.Response | None:
    """None: this try decides. Else the decision of an earlier try with the same request id
    (waited for while it runs), or a 409 when that one is still running past the deadline."""
    if await once.claim(key, deadline_s) == "run":
        return None
    earlier = await once.result(key, deadline_s + DEDUPE_WAIT_SLACK_S)
    if earlier is None:
        return _error(409, "in_progress", "a request with this request_id is still being decided")
    return None if isinstance(earlier, str) else earlier  # "run": released, claimed by this try


async def readyz(request: web.Request) -> web.Response:
    state = request.app.get(STATE)
    if state is None:
        return not_ready("starting")
    return await readiness(state.redis.client, len(state.policy_sync.library.labels()))
