"""Twilio Media Streams: the incoming-call webhook and the media WebSocket.

caller ⇄ Twilio ⇄ this WebSocket ⇄ Realtime WS. μ-law 8 kHz is passed through untouched in
both directions (``audio/pcmu``): payloads stay base64 strings, never decoded or resampled.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from typing import Any

import structlog
from aiohttp import web
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Connect, VoiceResponse

from responder.core.end_reason import STOP_RECEIVED
from responder.core.engine import engine_named
from responder.engines.realtime.session import PCMU
from responder.runtime.services import SERVICES, Services
from responder.transports.stream import MAX_FRAME_BYTES, LogNames, StreamCall
from responder.transports.twilio.control import TwilioCallActions
from responder.transports.twilio.frames import media_payload

log = structlog.get_logger("twilio")

VOICE_PATH = "/twilio/voice"
MEDIA_PATH = "/twilio/media"
STREAM_TOKEN_TTL_S = 120
BUSY_MESSAGE = "Sorry, all of our lines are busy right now. Please call again in a few minutes."
DRAINING_MESSAGE = (
    "Sorry, we can't take your call on this line right now. Please call again in a minute."
)
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
# a Twilio SID: CallSid goes into TwiML and Redis keys, streamSid is spliced into outgoing frames
_SID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")  # not allowed in XML 1.0
_DIGITS = frozenset("0123456789*#ABCD")


def add_twilio_routes(app: web.Application) -> None:
    app.router.add_post(VOICE_PATH, incoming_call)
    app.router.add_get(MEDIA_PATH, media_stream)


# -- webhook -----------------------------------------------------------------------------
def stream_token(secret: str, call_sid: str, expires: int) -> str:
    """Short-lived proof that a media stream belongs to a call whose webhook we validated."""
    msg = f"{call_sid}:{expires}".encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


def verify_stream_token(secret: str, call_sid: str, expires: str, token: str) -> bool:
    try:
        exp = int(expires)
    except ValueError:
        return False
    if exp < time.time():
        return False
    return hmac.compare_digest(stream_token(secret, call_sid, exp), token)


def twiml_connect(stream_url: str, parameters: dict[str, str]) -> str:
    response = VoiceResponse()
    connect = Connect()
    stream = connect.stream(url=stream_url)
    for name, value in parameters.items():
        stream.parameter(name=name, value=value)
    response.append(connect)
    return str(response)


def twiml_busy(message: str = BUSY_MESSAGE) -> str:
    """Refuse a call politely (every line taken, or this instance draining): a short
    message, then hang up."""
    response = VoiceResponse()
    response.say(message)
    response.hangup()
    return str(response)


async def incoming_call(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    settings = services.settings
    token = settings.twilio_auth_token
    if token is None or not token.get_secret_value():
        log.warning("twilio.webhook_rejected", reason="TWILIO_AUTH_TOKEN not configured")
        raise web.HTTPForbidden(text="webhook signature validation is not configured")
    if request.content_type != "application/x-www-form-urlencoded":  # what Twilio always sends
        log.warning("twilio.webhook_rejected", reason="not a form", content_type=request.content_type[:60])
        raise web.HTTPUnsupportedMediaType(text="expected application/x-www-form-urlencoded")
    try:
        form = await request.post()
    except (ValueError, LookupError):  # undecodable, or a charset nobody knows
        log.warning("twilio.webhook_rejected", reason="malformed form")
        raise web.HTTPBadRequest(text="malformed form body") from None
    # Twilio signs the URL exactly as configured (raw, not percent-decoded) and every value
    # of a repeated field: validate against the raw path and the multi-dict itself.
    url = settings.external_url() + request.raw_path
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not RequestValidator(token.get_secret_value()).validate(url, form, signature):
        log.warning("twilio.webhook_rejected", reason="bad signature", url=url)
        raise web.HTTPForbidden(text="invalid Twilio signature")
    params = {k: str(v) for k, v in form.items()}
    account = settings.twilio_account_sid
    if account and params.get("AccountSid") != account:
        log.warning("twilio.webhook_rejected", reason="call for another Twilio account")
        raise web.HTTPForbidden(text="unexpected Twilio account")
    call_sid = params.get("CallSid", "")
    if not _SID.fullmatch(call_sid):  # it goes into TwiML and Redis keys: a SID or nothing
        raise web.HTTPBadRequest(text="CallSid missing or malformed")
    if services.draining or not services.admission.has_room():
        reason = "draining" if services.draining else "capacity"
        log.warning("twilio.call_refused", call_id=call_sid, reason=reason)
        message = DRAINING_MESSAGE if services.draining else BUSY_MESSAGE
        return web.Response(text=twiml_busy(message), content_type="application/xml")
    expires = int(time.time()) + STREAM_TOKEN_TTL_S
    ws_url = _ws_url(settings.external_url()) + MEDIA_PATH
    # the webhook URL may choose the call's engine (?engine=live), else RESPONDER_ENGINE
    engine = engine_named(request.query.get("engine"), settings.engine)
    twiml = twiml_connect(
        ws_url,
        {
            "callSid": call_sid,
            "caller": _NOT_XML.sub("", params.get("From", ""))[:128],
            "expires": str(expires),
            "token": stream_token(token.get_secret_value(), call_sid, expires),
            "engine": engine,
        },
    )
    log.info("twilio.call_incoming", call_id=call_sid, stream_url=ws_url)
    return web.Response(text=twiml, content_type="application/xml")


def _ws_url(http_url: str) -> str:
    if http_url.startswith("https://"):
        return "wss://" + http_url.removeprefix("https://")
    return "ws://" + http_url.removeprefix("http://")


# -- media stream ------------------------------------------------------------------------
class TwilioCaller:
    """The caller side of a Media Stream: outgoing media, marks and clears."""

    def __init__(self, ws: web.WebSocketResponse, stream_sid: str) -> None:
        self.ws = ws
        self._media_prefix = '{"event":"media","streamSid":"' + stream_sid + '","media":{"payload":"'
        self._mark_prefix = '{"event":"mark","streamSid":"' + stream_sid + '","mark":{"name":"'
        self._clear = json.dumps({"event": "clear", "streamSid": stream_sid})

    async def send_audio(self, b64_audio: str, mark: str) -> None:
        if self.ws.closed:
            return
        await self.ws.send_str(self._media_prefix + b64_audio + '"}}')
        await self.ws.send_str(self._mark_prefix + mark + '"}}')

    async def clear_audio(self) -> None:
        if not self.ws.closed:
            await self.ws.send_str(self._clear)


class MediaSession(StreamCall):
    """One Media Stream WebSocket: parses Twilio frames and drives the call controller."""

    transport = "twilio"
    type_key = "event"
    audio_format = PCMU
    names = LogNames.of("twilio")

    def __init__(self, ws: web.WebSocketResponse, services: Services) -> None:
        super().__init__(ws, services)
        self.handlers = {
            "connected": self._on_connected,
            "start": self._on_start,
            "media": self._on_media,
            "mark": self._on_mark,
            "dtmf": self._on_dtmf,
            "stop": self._on_stop,
        }

    async def on_text(self, data: str) -> None:
        """Media frames (50 a second) take a fast path without ``json.loads``; the rest, odd
        media frames included, go through the generic parser and dispatch."""
        payload = media_payload(data)
        if payload is None or not payload or len(payload) % 4:
            await super().on_text(data)
        elif self.controller is not None:
            try:
                await self.controller.caller_audio(payload)
            except Exception as exc:  # as in dispatch(): a socket hiccup must not end the call
                self.log.error(self.names.frame_failed, frame_type="media", error=repr(exc))

    def call_actions(self) -> TwilioCallActions:
        number = self.services.settings.escalation_phone_number
        return TwilioCallActions(self.services.twilio_client, self.call_id, number)

    async def _on_connected(self, frame: dict[str, Any]) -> None:
        return None

    async def _on_start(self, frame: dict[str, Any]) -> None:
        if self.controller is not None or self.started:
            self.log.warning("twilio.frame_invalid", reason="duplicate start")
            return
        start = frame["start"]
        stream_sid = start["streamSid"]
        call_sid = start["callSid"]
        if not isinstance(stream_sid, str) or not _SID.fullmatch(stream_sid):
            raise ValueError("streamSid is not a stream SID")
        if not isinstance(call_sid, str):
            raise ValueError("callSid is not a string")
        params = start.get("customParameters") or {}
        settings = self.services.settings
        secret = settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else ""
        if not secret or not verify_stream_token(
            secret, call_sid, str(params.get("expires", "")), str(params.get("token", ""))
        ):
            self.log.warning("twilio.stream_rejected", call_id=call_sid, reason="bad stream token")
            await self.ws.close(code=1008, message=b"invalid stream token")
            return
        caller = TwilioCaller(self.ws, stream_sid)
        self.engine = engine_named(params.get("engine"), self.engine)
        await self.begin(call_sid, caller, caller=str(params.get("caller", "")), stream_sid=stream_sid)

    async def _on_media(self, frame: dict[str, Any]) -> None:
        payload = frame["media"]["payload"]
        if not isinstance(payload, str) or not payload or len(payload) % 4 or not _BASE64.fullmatch(payload):
            raise ValueError("media payload is not base64 text")
        if self.controller is not None:
            await self.controller.caller_audio(payload)

    async def _on_mark(self, frame: dict[str, Any]) -> None:
        if self.controller is not None:
            self.controller.caller_mark(str(frame["mark"]["name"]))

    async def _on_dtmf(self, frame: dict[str, Any]) -> None:
        digit = frame["dtmf"]["digit"]
        if not isinstance(digit, str) or digit not in _DIGITS:
            raise ValueError("dtmf digit must be one of 0-9 * # A-D")
        if self.controller is not None:
            await self.controller.caller_dtmf(digit)

    async def _on_stop(self, frame: dict[str, Any]) -> None:
        self.log.info("twilio.stream_stopped")
        if self.controller is not None:
            await self.controller.close(STOP_RECEIVED)


async def media_stream(request: web.Request) -> web.WebSocketResponse:
    services = request.app[SERVICES]
    # the webhook checked for room already: this stream's call counts until it ends
    ticket = services.admission.admit("twilio", promised=True)
    try:
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES, heartbeat=30)
        await ws.prepare(request)
        await MediaSession(ws, services).serve()
        return ws
    finally:
        ticket.release()
