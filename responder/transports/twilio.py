"""Twilio Media Streams: the incoming-call webhook and the media WebSocket.

caller ⇄ Twilio ⇄ this WebSocket ⇄ Realtime WS. μ-law 8 kHz is passed through untouched in
both directions (``audio/pcmu``): payloads stay base64 strings, never decoded or resampled.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import WSMsgType, web
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Connect, VoiceResponse

from responder.call import CallController
from responder.realtime.connection import open_realtime
from responder.realtime.session import PCMU, build_session
from responder.services import SERVICES, Services

log = structlog.get_logger("twilio")

VOICE_PATH = "/twilio/voice"
MEDIA_PATH = "/twilio/media"
STREAM_TOKEN_TTL_S = 120
START_TIMEOUT_S = 10.0
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


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


async def incoming_call(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    settings = services.settings
    token = settings.twilio_auth_token
    if token is None or not token.get_secret_value():
        log.warning("twilio.webhook_rejected", reason="TWILIO_AUTH_TOKEN not configured")
        raise web.HTTPForbidden(text="webhook signature validation is not configured")
    form = await request.post()
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
    if not call_sid:
        raise web.HTTPBadRequest(text="CallSid missing")
    expires = int(time.time()) + STREAM_TOKEN_TTL_S
    ws_url = _ws_url(settings.external_url()) + MEDIA_PATH
    twiml = twiml_connect(
        ws_url,
        {
            "callSid": call_sid,
            "caller": params.get("From", ""),
            "expires": str(expires),
            "token": stream_token(token.get_secret_value(), call_sid, expires),
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


class MediaSession:
    """One Media Stream WebSocket: parses Twilio frames and drives the call controller."""

    def __init__(self, ws: web.WebSocketResponse, services: Services) -> None:
        self.ws = ws
        self.services = services
        self.controller: CallController | None = None
        self.call_id = "unknown"
        self.log = log
        self._run_task: asyncio.Task[None] | None = None
        self._handlers: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {
            "connected": self._on_connected,
            "start": self._on_start,
            "media": self._on_media,
            "mark": self._on_mark,
            "dtmf": self._on_dtmf,
            "stop": self._on_stop,
        }

    async def serve(self) -> None:
        watchdog = asyncio.create_task(self._require_start())
        try:
            async for msg in self.ws:
                if msg.type != WSMsgType.TEXT:
                    if msg.type == WSMsgType.ERROR:
                        break
                    self.log.warning("twilio.frame_invalid", reason="non-text frame")
                    continue
                await self._handle(msg.data)
                if self.controller is not None and self.controller.closed:
                    break
        finally:
            watchdog.cancel()
            await self._finish()

    async def _require_start(self) -> None:
        """A socket that never identifies its call is closed instead of being kept alive."""
        await asyncio.sleep(START_TIMEOUT_S)
        if self.call_id == "unknown" and not self.ws.closed:
            self.log.warning("twilio.stream_rejected", reason="no start event in time")
            await self.ws.close(code=1008, message=b"start expected")

    async def _handle(self, data: str) -> None:
        try:
            frame = json.loads(data)
            event = frame["event"]
            if not isinstance(event, str):
                raise TypeError("event is not a string")
        except (ValueError, KeyError, TypeError, RecursionError):
            self.log.warning("twilio.frame_invalid", reason="not a Twilio event", sample=data[:80])
            return
        handler = self._handlers.get(event)
        if handler is None:
            self.log.info("twilio.event_ignored", twilio_event=event[:40])
            return
        try:
            await handler(frame)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            self.log.warning("twilio.frame_invalid", twilio_event=event, reason=repr(exc))
        except Exception as exc:  # a Redis or socket hiccup must not end the caller's call
            self.log.error("twilio.frame_failed", twilio_event=event, error=repr(exc))

    async def _on_connected(self, frame: dict[str, Any]) -> None:
        return None

    async def _on_start(self, frame: dict[str, Any]) -> None:
        if self.controller is not None:
            self.log.warning("twilio.frame_invalid", reason="duplicate start")
            return
        start = frame["start"]
        stream_sid = start["streamSid"]
        call_sid = start["callSid"]
        params = start.get("customParameters") or {}
        settings = self.services.settings
        secret = settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else ""
        if not secret or not verify_stream_token(
            secret, call_sid, str(params.get("expires", "")), str(params.get("token", ""))
        ):
            self.log.warning("twilio.stream_rejected", call_id=call_sid, reason="bad stream token")
            await self.ws.close(code=1008, message=b"invalid stream token")
            return
        self.call_id = call_sid
        self.log = log.bind(call_id=call_sid)
        await self.services.history.start_call(
            call_sid, transport="twilio", caller=str(params.get("caller", "")), stream_sid=stream_sid
        )
        self.log.info("call.started", transport="twilio", stream_sid=stream_sid)
        self._run_task = asyncio.create_task(self._run_call(TwilioCaller(self.ws, stream_sid)))

    async def _run_call(self, caller: TwilioCaller) -> None:
        services = self.services
        try:
            async with open_realtime(
                services.realtime_client, self.call_id, model=services.settings.realtime_model
            ) as rt:
                self.controller = CallController(
                    self.call_id, rt, caller, services.history, services.decide, services.controller_config()
                )
                await self.controller.start(build_session(services.settings, audio_format=PCMU))
                await self.controller.run()
        except Exception as exc:
            self.log.error("call.realtime_failed", error=repr(exc))
            if self.controller is None:
                await self.services.history.set_meta(self.call_id, status="failed", error=type(exc).__name__)
        finally:
            if not self.ws.closed:
                await self.ws.close()

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
        if self.controller is not None:
            await self.controller.caller_dtmf(str(frame["dtmf"]["digit"]))

    async def _on_stop(self, frame: dict[str, Any]) -> None:
        self.log.info("twilio.stream_stopped")
        if self.controller is not None:
            await self.controller.close()

    async def _finish(self) -> None:
        """The Twilio side is gone: end the call, whatever state its setup is in."""
        if self._run_task is None:
            return
        if self.controller is None:
            self._run_task.cancel()  # the caller left before the model session was ready
        else:
            await self.controller.close()
        try:
            await asyncio.wait_for(self._run_task, 5)
        except (TimeoutError, asyncio.CancelledError):
            self._run_task.cancel()
        if self.controller is not None:
            await self.controller.close()  # idempotent; covers a controller created meanwhile
        elif (await self.services.history.get_meta(self.call_id)).get("status") == "active":
            await self.services.history.set_meta(self.call_id, status="ended", ended_at=time.time())


async def media_stream(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=64 * 1024, heartbeat=30)
    await ws.prepare(request)
    await MediaSession(ws, request.app[SERVICES]).serve()
    return ws
