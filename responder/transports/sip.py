"""OpenAI SIP: the ``realtime.call.incoming`` and ``live.transport.incoming`` webhooks.

The event type chooses the call's engine: Realtime (``rtc_…`` call ids, ``client.realtime.calls``)
or GPT-Live (``live_…`` session ids, ``client.live.sessions``); both are served the same way.

OpenAI answers the SIP call and POSTs a signed webhook. The handler verifies it with the
``openai`` SDK (``client.webhooks.unwrap``: Standard Webhooks HMAC and a replay window),
admits the call once per ``call_id`` (deliveries are retried and duplicated, so a Redis
``SET NX`` makes the handler idempotent), accepts it with the session config, and runs the
call controller on a sideband WebSocket. At capacity it rejects the call as busy (486). A
404 on accept means the caller hung up while ringing: logged, not an error.
"""

from __future__ import annotations

from typing import Final

import structlog
from aiohttp import web
from openai import InvalidWebhookSignatureError, NotFoundError

from infra.logs import LogBudget
from responder.core.engine import EngineName
from responder.runtime.admission import AdmissionRefused
from responder.runtime.services import SERVICES, Services
from responder.transports.openai_calls import OPENAI_CALL_TIMEOUT_S
from responder.transports.sideband import live_accept_session, run_sideband_call, sideband_session

log = structlog.get_logger("sip")
_REJECTIONS_LOGGED = LogBudget(burst=20, per_s=1.0)  # refused webhooks: anyone can post them

SIP_WEBHOOK_PATH = "/openai/sip"
BUSY = 486
CLAIM_TTL_S = 24 * 3600
SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
# the webhook's event type chooses the call's engine
INCOMING: Final[dict[str, EngineName]] = {
    "realtime.call.incoming": "realtime",
    "live.transport.incoming": "live",
}


def _webhook_rejected(reason: str, **fields: str) -> None:
    """A refused webhook, logged within a budget: anyone can post them as fast as they like."""
    if (suppressed := _REJECTIONS_LOGGED.let_through()) is not None:
        log.warning("sip.webhook_rejected", reason=reason, suppressed=suppressed, **fields)


def add_sip_routes(app: web.Application) -> None:
    app.router.add_post(SIP_WEBHOOK_PATH, incoming_sip_call)


async def incoming_sip_call(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    secret = services.settings.openai_webhook_secret
    body = await request.read()  # bounded by the app's client_max_size (413 beyond)
    if secret is None or not secret.get_secret_value():
        _webhook_rejected("OPENAI_WEBHOOK_SECRET not configured")
        raise web.HTTPUnauthorized(text="webhook signature validation is not configured")
    if any(not request.headers.get(name) for name in SIGNATURE_HEADERS):
        _webhook_rejected("signature headers missing")
        raise web.HTTPBadRequest(text="webhook signature headers missing")
    try:
        event = services.realtime_client.webhooks.unwrap(
            body, request.headers, secret=secret.get_secret_value()
        )
    except InvalidWebhookSignatureError as exc:
        _webhook_rejected("bad signature", detail=str(exc))
        raise web.HTTPUnauthorized(text="invalid webhook signature") from None
    except (ValueError, RecursionError):  # signed, but not JSON
        log.warning("sip.webhook_invalid", reason="body is not JSON")
        raise web.HTTPBadRequest(text="malformed webhook event") from None
    kind = getattr(event, "type", None)
    data = getattr(event, "data", None)
    engine = INCOMING.get(kind) if isinstance(kind, str) else None
    if engine is None or (engine == "live" and getattr(data, "type", None) != "sip"):
        log.info("sip.webhook_ignored", webhook_type=str(kind)[:60])
        return web.json_response({"status": "ignored"})
    call_id = getattr(data, "call_id" if engine == "realtime" else "session_id", None)
    prefix = "rtc_" if engine == "realtime" else "live_"
    if not isinstance(call_id, str) or not call_id.startswith(prefix) or len(call_id) > 128:
        raise web.HTTPBadRequest(text="call_id missing or malformed")
    caller = _sip_from(getattr(data, "sip_headers", None))
    return await _admit(services, call_id, caller, request.headers["webhook-id"], engine)


async def _admit(
    services: Services, call_id: str, caller: str, webhook_id: str, engine: EngineName
) -> web.Response:
    clog = log.bind(call_id=call_id)
    claim = f"{services.settings.redis_prefix}:sip:claimed:{{{call_id}}}"
    if not await services.redis.client.set(claim, webhook_id, nx=True, ex=CLAIM_TTL_S):
        clog.info("sip.duplicate_delivery", webhook_id=webhook_id)
        return web.json_response({"status": "duplicate"})
    client = services.realtime_client
    try:
        ticket = services.admission.admit("sip", draining=services.draining)
    except AdmissionRefused as refused:
        clog.warning("sip.call_rejected", reason=refused.reason, status_code=BUSY)
        try:
            calls = client.live.sessions if engine == "live" else client.realtime.calls
            await calls.reject(call_id, status_code=BUSY, timeout=OPENAI_CALL_TIMEOUT_S)
        except NotFoundError:
            clog.info("sip.caller_gone", stage="reject")
        except Exception as exc:
            await services.redis.client.delete(claim)  # OpenAI's retry of this delivery rejects again
            clog.error("sip.reject_failed", error=repr(exc))
            raise web.HTTPBadGateway(text="could not reject the call") from None
        return web.json_response({"status": "rejected", "reason": refused.reason})
    try:
        if engine == "live":
            await client.live.sessions.accept(
                call_id, session=live_accept_session(services), timeout=OPENAI_CALL_TIMEOUT_S  # type: ignore[arg-type]
            )
        else:
            await client.realtime.calls.accept(
                call_id, **sideband_session(services), timeout=OPENAI_CALL_TIMEOUT_S  # type: ignore[arg-type]
            )
    except NotFoundError:
        ticket.release()
        clog.info("sip.caller_gone", stage="accept")  # hung up while ringing: not an error
        return web.json_response({"status": "gone"})
    except Exception as exc:
        ticket.release()
        await services.redis.client.delete(claim)  # let OpenAI's retry of this delivery try again
        clog.error("sip.accept_failed", error=repr(exc))
        raise web.HTTPBadGateway(text="could not accept the call") from None
    clog.info("sip.call_accepted", caller=caller)
    services.spawn_call(
        run_sideband_call(
            services, call_id, transport="sip", caller=caller, ticket=ticket,
            refer_uri=services.settings.escalation_sip_uri, engine=engine,
        ),
        name=f"sip:{call_id}",
    )  # fmt: skip
    return web.json_response({"status": "accepted"})


def _sip_from(sip_headers: object) -> str:
    """The caller's address from the SIP ``From`` header, if any."""
    for header in sip_headers if isinstance(sip_headers, list) else []:
        name = getattr(header, "name", None) or (header.get("name") if isinstance(header, dict) else None)
        if str(name or "").lower() == "from":
            value = getattr(header, "value", None) or (
                header.get("value") if isinstance(header, dict) else ""
            )
            return str(value or "")[:200]
    return ""
