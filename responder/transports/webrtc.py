"""Browser WebRTC with server-side control.

The browser POSTs its SDP offer here. The service creates the call with OpenAI using the
real key (``client.realtime.calls.create``: multipart SDP + session config; the call id is in
the ``Location`` header), returns the answer SDP, and attaches a sideband controller to the
call by id. The API key never reaches the browser. Call creation costs money, so it passes
call admission first: a per-client rate limit and the instance's concurrent-call cap (429).
"""

from __future__ import annotations

import re

import structlog
from aiohttp import web
from openai import APIError, BadRequestError

from infra.logs import LogBudget
from responder.core.engine import engine_named
from responder.runtime.admission import AdmissionRefused
from responder.runtime.client_address import client_address
from responder.runtime.services import SERVICES
from responder.transports.openai_calls import OPENAI_CALL_TIMEOUT_S
from responder.transports.sideband import live_media_session, run_sideband_call, sideband_session

log = structlog.get_logger("webrtc")

WEBRTC_PATH = "/calls/webrtc"
MAX_OFFER_BYTES = 32 * 1024
# refused browser calls (/calls/webrtc, /calls/ws): anyone can repeat them, so a budget of lines
# (every refusal is still counted: responder_calls_refused_total)
REFUSALS_LOGGED = LogBudget(burst=20, per_s=1.0)
_AUDIO_SECTION = re.compile(r"^m=audio ", re.MULTILINE)


def add_webrtc_routes(app: web.Application) -> None:
    app.router.add_post(WEBRTC_PATH, create_webrtc_call)


def refused_response(refused: AdmissionRefused) -> web.Response:
    text = "too many calls right now" if refused.reason == "capacity" else "too many call attempts"
    return web.json_response(
        {"error": refused.reason, "message": text},
        status=429,
        headers={"Retry-After": str(int(refused.retry_after_s))},
    )


async def create_webrtc_call(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    if request.content_type != "application/sdp":
        # not a CORS-safelisted type: another site's page cannot post offers from a visitor's browser
        raise web.HTTPUnsupportedMediaType(text="expected Content-Type: application/sdp")
    if request.content_length is not None and request.content_length > MAX_OFFER_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_OFFER_BYTES, actual_size=request.content_length)
    body = await request.read()
    if len(body) > MAX_OFFER_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_OFFER_BYTES, actual_size=len(body))
    try:  # SDP is UTF-8 whatever charset the header claims (an unknown one must not be a 500)
        offer = body.decode("utf-8")
    except UnicodeDecodeError:
        raise web.HTTPBadRequest(text="the SDP offer is not UTF-8 text") from None
    if not offer.startswith("v=0") or not _AUDIO_SECTION.search(offer):
        raise web.HTTPBadRequest(text="expected an SDP offer with an audio section (application/sdp)")
    try:
        ticket = services.admission.admit(
            "webrtc", client_address(request, services.settings), draining=services.draining
        )
    except AdmissionRefused as refused:
        if (suppressed := REFUSALS_LOGGED.let_through()) is not None:
            log.warning("webrtc.call_refused", reason=refused.reason, suppressed=suppressed)
        return refused_response(refused)
    engine = engine_named(request.query.get("engine"), services.settings.engine)  # ?engine=live
    try:
        if engine == "live":  # the session id comes in the JSON body, with the answer
            created = await services.realtime_client.live.create(
                session=live_media_session(services),  # type: ignore[arg-type]
                transport={"type": "webrtc", "sdp": offer},
                timeout=OPENAI_CALL_TIMEOUT_S,
            )
            call_id, answer = created.session.id, str(getattr(created.transport, "sdp", ""))
            location = call_id
        else:
            raw = await services.realtime_client.realtime.calls.with_raw_response.create(
                sdp=offer,
                session=sideband_session(services),  # type: ignore[arg-type]
                timeout=OPENAI_CALL_TIMEOUT_S,
            )
            location = raw.headers.get("Location", "")
            call_id = location.rstrip("/").rsplit("/", 1)[-1]
            answer = raw.http_response.text
    except BadRequestError as exc:  # OpenAI refused this offer: the client's request, not a gateway fault
        ticket.release()
        log.warning("webrtc.offer_refused", code=exc.code, param=exc.param, error=str(exc.message)[:200])
        raise web.HTTPBadRequest(text="the SDP offer was refused") from None
    except APIError as exc:
        ticket.release()
        log.error("webrtc.create_failed", status=getattr(exc, "status_code", None), error=type(exc).__name__)
        raise web.HTTPBadGateway(text="the call could not be created") from None
    if not call_id.startswith("live_" if engine == "live" else "rtc_") or len(call_id) > 128:
        ticket.release()
        log.error("webrtc.create_failed", reason="no call id in Location", location=location[:200])
        raise web.HTTPBadGateway(text="the call could not be created")
    log.info("webrtc.call_created", call_id=call_id)
    services.spawn_call(
        run_sideband_call(
            services, call_id, transport="webrtc", caller="browser", ticket=ticket, refer_uri=None,
            engine=engine,
        ),
        name=f"webrtc:{call_id}",
    )
    headers = {"X-Call-Id": call_id, "X-Call-Token": services.view_token(call_id)}
    return web.Response(text=answer, content_type="application/sdp", headers=headers)
