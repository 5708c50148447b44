"""Twilio Media Streams: the incoming-call webhook and the media WebSocket.

caller ⇄ Twilio ⇄ this WebSocket ⇄ Realtime WS. μ-law 8 kHz is passed through untouched in
both directions (``audio/pcmu``): payloads stay base64 strings, never decoded or resampled.

A call takes capacity only once it is authenticated: the signed webhook claims its CallSid
(once: :mod:`.claims`) and admits the call, holding the admission for its stream; the media
stream claims it with the one-time stream token of its ``start``. Until then a media socket
holds no call capacity, only one of a few places per client (``pending_sockets``), for at most
``RESPONDER_STREAM_HANDSHAKE_S``; a browser ``Origin`` is refused (Twilio sends none).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web
from redis.exceptions import RedisError
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Connect, VoiceResponse

from infra.logs import LogBudget
from infra.settings import Settings
from responder.core.end_reason import STOP_RECEIVED
from responder.core.engine import engine_named
from responder.engines.realtime.session import PCMU
from responder.runtime.admission import AdmissionRefused, Ticket
from responder.runtime.client_address import client_address
from responder.runtime.handshake import (
    BAD_TOKEN,
    NO_START,
    ORIGIN,
    TOKEN_USED,
    UNAVAILABLE,
    Pending,
    PendingRefused,
    SocketRefusal,
    socket_refused,
)
from responder.runtime.services import SERVICES, Services
from responder.transports.frame_queue import SyncReadSocket
from responder.transports.frame_writer import MAX_FRAME, frame_writer
from responder.transports.stream import MAX_MSG_SIZE, LogNames, StreamCall
from responder.transports.twilio.claims import claim_call, claim_stream
from responder.transports.twilio.control import TwilioCallActions
from responder.transports.twilio.frames import mark_name, media_payload

log = structlog.get_logger("twilio")

VOICE_PATH = "/twilio/voice"
MEDIA_PATH = "/twilio/media"
STREAM_TOKEN_TTL_S = 30
# Twilio opens the stream at once: the admission is held for it this long (a later stream is
# admitted anyway), so that a caller gone while ringing holds no line, nor a drain, for long
STREAM_HOLD_S = 10
BUSY_MESSAGE = "Sorry, all of our lines are busy right now. Please call again in a few minutes."
DRAINING_MESSAGE = (
    "Sorry, we can't take your call on this line right now. Please call again in a minute."
)
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
# a Twilio SID: CallSid goes into TwiML and Redis keys, streamSid is spliced into outgoing frames
_SID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")  # not allowed in XML 1.0
_DIGITS = frozenset("0123456789*#ABCD")
_REFUSALS_LOGGED = LogBudget(burst=20, per_s=1.0)  # refused upgrades: anyone can repeat them
_REJECTIONS_LOGGED = LogBudget(burst=20, per_s=1.0)  # refused webhooks: so can anyone these
# starts refused for their token, a budget each: a flood of made-up tokens does not hide the
# rarer reuse of a real one (a leaked token)
_BAD_TOKENS_LOGGED = LogBudget(burst=20, per_s=1.0)
_USED_TOKENS_LOGGED = LogBudget(burst=20, per_s=1.0)


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


def twiml_hangup() -> str:
    """The answer to a replayed webhook: nothing to connect, hang up."""
    response = VoiceResponse()
    response.hangup()
    return str(response)


def _twiml(text: str) -> web.Response:
    return web.Response(text=text, content_type="application/xml")


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
        _webhook_rejected("TWILIO_AUTH_TOKEN not configured")
        raise web.HTTPForbidden(text="webhook signature validation is not configured")
    if request.content_type != "application/x-www-form-urlencoded":  # what Twilio always sends
        _webhook_rejected("not a form", content_type=request.content_type[:60])
        raise web.HTTPUnsupportedMediaType(text="expected application/x-www-form-urlencoded")
    try:
        form = await request.post()
    except (ValueError, LookupError):  # undecodable, or a charset nobody knows
        _webhook_rejected("malformed form")
        raise web.HTTPBadRequest(text="malformed form body") from None
    # Twilio signs the URL exactly as configured (raw, not percent-decoded) and every value
    # of a repeated field: validate against the raw path and the multi-dict itself.
    url = settings.external_url() + request.raw_path
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not _valid_signature(token.get_secret_value(), url, form, signature):
        _webhook_rejected("bad signature", url=url)
        raise web.HTTPForbidden(text="invalid Twilio signature")
    params = {k: str(v) for k, v in form.items()}
    account = settings.twilio_account_sid
    if account and params.get("AccountSid") != account:
        _webhook_rejected("call for another Twilio account")
        raise web.HTTPForbidden(text="unexpected Twilio account")
    call_sid = params.get("CallSid", "")
    if not _SID.fullmatch(call_sid):  # it goes into TwiML and Redis keys: a SID or nothing
        raise web.HTTPBadRequest(text="CallSid missing or malformed")
    replayed = await _claim_call(services, call_sid)
    if replayed is not None:
        return replayed
    try:
        ticket = services.admission.admit("twilio", draining=services.draining)
    except AdmissionRefused:
        reason = "draining" if services.draining else "capacity"
        log.warning("twilio.call_refused", call_id=call_sid, reason=reason)
        return _twiml(twiml_busy(DRAINING_MESSAGE if services.draining else BUSY_MESSAGE))
    # the call counts from now on; its stream takes the admission over with the token, or it lapses
    services.reservations.hold(call_sid, ticket, STREAM_HOLD_S)
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


def _webhook_rejected(reason: str, **fields: str) -> None:
    """A refused webhook, logged within a budget: anyone can post them as fast as they like."""
    if (suppressed := _REJECTIONS_LOGGED.let_through()) is not None:
        log.warning("twilio.webhook_rejected", reason=reason, suppressed=suppressed, **fields)


async def _claim_call(services: Services, call_sid: str) -> web.Response | None:
    """None for a CallSid seen for the first time; else what a replay (or retry) is answered."""
    settings = services.settings
    try:
        first = await claim_call(
            services.redis.client, settings.redis_prefix, call_sid, settings.history_ttl_s
        )
    except RedisError as exc:  # cannot tell a replay from a new call: take none
        log.error("twilio.claim_failed", call_id=call_sid, stage="webhook", error=repr(exc))
        return _twiml(twiml_busy(DRAINING_MESSAGE))
    if first:
        return None
    log.warning("twilio.webhook_replayed", call_id=call_sid)
    return _twiml(twiml_hangup())


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
        self._frames = frame_writer(ws)  # media and its mark in one write (frame_writer.py)
        self._media_max = MAX_FRAME - len(self._media_prefix) - 4  # the largest payload a frame takes

    async def send_audio(self, b64_audio: str, mark: str | None) -> None:
        media = self._media_prefix + b64_audio + '"}}'
        texts = (media,) if mark is None else (media, self._mark_prefix + mark + '"}}')
        if not self._written_now(texts):  # the hot path: no further coroutine when written
            await self._send_each(texts)

    def send_audio_now(self, b64_audio: str, mark: Callable[[], str | None]) -> bool:
        frames = self._frames
        # checked before mark() is called: from then on the frames fit and go out
        if frames is None or len(b64_audio) > self._media_max or not b64_audio.isascii():
            return False
        if not frames.ready():
            return False
        media = self._media_prefix + b64_audio + '"}}'
        name = mark()
        return frames.write(media) if name is None else frames.write(media, self._mark_prefix + name + '"}}')

    async def send_mark(self, mark: str) -> None:
        texts = (self._mark_prefix + mark + '"}}',)
        if not self._written_now(texts):
            await self._send_each(texts)

    async def clear_audio(self) -> None:
        if not self._written_now((self._clear,)):
            await self._send_each((self._clear,))

    def clear_now(self) -> bool:
        return self._written_now((self._clear,))

    def _written_now(self, texts: tuple[str, ...]) -> bool:
        """Whether ``texts`` need nothing more: the socket is closed, or the frame writer put
        them out in one write."""
        return self.ws.closed or (self._frames is not None and self._frames.write_now(*texts))

    async def _send_each(self, texts: tuple[str, ...]) -> None:
        """What the frame writer could not take: one awaited ``send_str`` per frame."""
        for text in texts:
            await self.ws.send_str(text)


class MediaSession(StreamCall):
    """One Media Stream WebSocket: parses Twilio frames and drives the call controller."""

    transport = "twilio"
    type_key = "event"
    audio_format = PCMU
    names = LogNames.of("twilio")

    def __init__(self, ws: web.WebSocketResponse, services: Services, pending: Pending | None = None) -> None:
        super().__init__(ws, services)
        self.pending = pending  # this socket's place among the unauthenticated ones, until start
        self.ticket: Ticket | None = None  # the call's admission, once the stream token is claimed
        self.refused: SocketRefusal | None = None
        self._unsent: str | None = None  # a media payload on_text_now handed to on_text
        self.handlers = {
            "connected": self._on_connected,
            "start": self._on_start,
            "media": self._on_media,
            "mark": self._on_mark,
            "dtmf": self._on_dtmf,
            "stop": self._on_stop,
        }

    def on_text_now(self, data: str) -> bool:
        """Media frames (50 a second): recognised without ``json.loads`` and relayed without a
        coroutine whenever the model socket can take them at once; our marks' echoes, handled
        as ``_on_mark`` would. False: :meth:`on_text`."""
        payload = media_payload(data)
        controller = self.controller
        if payload is None and (name := mark_name(data)) is not None:
            self._unsent = None
            try:
                if controller is not None:
                    controller.caller_mark(name)
            except Exception as exc:  # as in dispatch()
                self.log.error(self.names.frame_failed, frame_type="mark", error=repr(exc)[:200])
            return True
        if payload is None or not payload or len(payload) % 4:
            self._unsent = None
            return False
        try:
            if controller is None or controller.caller_audio_now(payload):
                return True
        except Exception as exc:  # as in dispatch(): a socket hiccup must not end the call
            self.log.error(self.names.frame_failed, frame_type="media", error=repr(exc))
            return True
        self._unsent = payload  # for on_text, which serve() calls next: not parsed twice
        return False

    async def on_text(self, data: str) -> None:
        """After :meth:`on_text_now` said False: its media payload the model socket could not
        take at once, awaited; any other frame (odd media frames included) through the generic
        parser and dispatch."""
        payload, self._unsent = self._unsent, None
        if payload is None:
            await super().on_text(data)
        elif self.controller is not None:
            try:
                await self.controller.caller_audio(payload, tried_now=True)
            except Exception as exc:  # as in dispatch(): a socket hiccup must not end the call
                self.log.error(self.names.frame_failed, frame_type="media", error=repr(exc))

    def start_timeout_s(self) -> float:
        """Unauthenticated until ``start``: a short deadline (never longer than the generic one)."""
        return min(super().start_timeout_s(), self.services.settings.stream_handshake_s)

    def idle_timeout_s(self) -> float:
        """Twilio sends a frame every 20 ms while the call is up: silence means it is gone."""
        return self.services.settings.stream_idle_s

    def finish_admission(self) -> None:
        """The socket is gone: free its call's admission, count it if it never authenticated."""
        if self.ticket is not None:
            self.ticket.release()
        if not self.started:
            socket_refused("twilio", self.refused or NO_START)

    def call_actions(self) -> TwilioCallActions:
        number = self.services.settings.escalation_phone_number
        return TwilioCallActions(self.services.twilio_client, self.call_id, number)

    async def _on_connected(self, frame: dict[str, Any]) -> None:
        return None

    async def _on_start(self, frame: dict[str, Any]) -> None:
        if self.controller is not None or self.started:
            if self.invalid_frames.allow():
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
        expires = str(params.get("expires", ""))
        if not secret or not verify_stream_token(secret, call_sid, expires, str(params.get("token", ""))):
            self.refused = BAD_TOKEN
            if (suppressed := _BAD_TOKENS_LOGGED.let_through()) is not None:  # anyone can send one
                self.log.warning(
                    "twilio.stream_rejected", call_id=call_sid, reason="bad stream token",
                    suppressed=suppressed,
                )  # fmt: skip
            await self.ws.close(code=1008, message=b"invalid stream token")
            return
        if not await self._claim_stream(call_sid, stream_sid, int(expires)):
            return
        # authenticated: the admission its webhook took (on this instance) is the call's now
        self.ticket = self.services.reservations.claim(call_sid) or self.services.admission.admit(
            "twilio", promised=True
        )
        if self.pending is not None:
            self.pending.release()
        caller = TwilioCaller(self.ws, stream_sid)
        self.engine = engine_named(params.get("engine"), self.engine)
        await self.begin(call_sid, caller, caller=str(params.get("caller", "")), stream_sid=stream_sid)

    async def _claim_stream(self, call_sid: str, stream_sid: str, expires: int) -> bool:
        """The stream token works once: the first stream to show it claims it."""
        settings = self.services.settings
        ttl_s = expires - int(time.time()) + 60
        try:
            redis = self.services.redis.client
            first = await claim_stream(redis, settings.redis_prefix, call_sid, stream_sid, ttl_s)
        except RedisError as exc:
            self.refused = UNAVAILABLE
            self.log.error("twilio.claim_failed", call_id=call_sid, stage="stream", error=repr(exc))
            await self.ws.close(code=1011, message=b"stream token could not be checked")
            return False
        if not first:
            self.refused = TOKEN_USED
            if (suppressed := _USED_TOKENS_LOGGED.let_through()) is not None:  # a replayed start
                self.log.warning(
                    "twilio.stream_rejected", call_id=call_sid, reason="stream token already used",
                    suppressed=suppressed,
                )  # fmt: skip
            await self.ws.close(code=1008, message=b"stream token already used")
        return first

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
        await self.caller_dtmf(digit)

    async def _on_stop(self, frame: dict[str, Any]) -> None:
        self.log.info("twilio.stream_stopped")
        if self.controller is not None:
            await self.controller.close(STOP_RECEIVED)


async def media_stream(request: web.Request) -> web.WebSocketResponse:
    services = request.app[SERVICES]
    origin = request.headers.get("Origin")
    if origin is not None:  # Twilio sends none; a web page's socket always does
        _refused(ORIGIN, origin=origin[:100])
        raise web.HTTPForbidden(text="media streams are opened by Twilio, not by web pages")
    try:  # no call capacity before the stream token: one of a few places per client instead
        client = client_address(request, services.settings)
        signed = _upgrade_signed(request, services.settings)  # Twilio's: places of its own
        pending = services.pending_sockets.enter("twilio", client, signed=signed)
    except PendingRefused as refused:
        _refused(refused.reason)
        raise web.HTTPTooManyRequests(
            text="too many media streams waiting for their start", headers={"Retry-After": "1"}
        ) from None
    session: MediaSession | None = None
    try:
        # no ping: a timer reset per received frame costs more than the idle check (stream.py)
        ws = SyncReadSocket(max_msg_size=MAX_MSG_SIZE)  # media frames handled as they are parsed
        await ws.prepare(request)
        session = MediaSession(ws, services, pending)
        await session.serve()
        return ws
    finally:
        pending.release()
        if session is not None:
            session.finish_admission()


def _valid_signature(token: str, url: str, form: Any, signature: str) -> bool:
    try:
        return bool(RequestValidator(token).validate(url, form, signature))
    except ValueError:  # a URL it cannot parse (an absolute-form request target): not Twilio's
        return False


def _upgrade_signed(request: web.Request, settings: Settings) -> bool:
    """Twilio signs a media stream's upgrade as it signs a webhook: ``X-Twilio-Signature`` over
    the stream's URL (``wss://…/twilio/media``), with no parameters. A valid one shows the
    socket is Twilio's before its ``start`` arrives; its absence proves nothing (an older
    account, a proxy that drops the header), so such a socket is served as before."""
    signature = request.headers.get("X-Twilio-Signature", "")
    token = settings.twilio_auth_token
    if not signature or token is None or not token.get_secret_value() or len(signature) > 100:
        return False
    if request.rel_url.raw_path_qs != MEDIA_PATH:  # the URL our TwiML gives, nothing added
        return False
    url = _ws_url(settings.external_url()) + MEDIA_PATH
    return _valid_signature(token.get_secret_value(), url, {}, signature)


def _refused(reason: SocketRefusal, **fields: str) -> None:
    socket_refused("twilio", reason)
    if (suppressed := _REFUSALS_LOGGED.let_through()) is not None:
        log.warning("twilio.stream_refused", reason=reason, suppressed=suppressed, **fields)
