"""Twilio call control behind ``escalate_to_human`` and ``end_call``: a REST call update
through the ``twilio`` package's async client — TwiML ``<Dial>`` to transfer,
``status=completed`` to hang up. (SIP and WebRTC: :mod:`responder.transports.openai_calls`;
the WebSocket transport has none: the controller closing the call closes the socket.)"""

from __future__ import annotations

from typing import Any

from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client as TwilioClient
from twilio.twiml.voice_response import VoiceResponse

from infra.settings import Settings
from responder.core.actions import ActionUnavailable

TWILIO_API = "https://api.twilio.com"
TWILIO_TIMEOUT_S = 5.0


class _TwilioHttpClient(AsyncTwilioHttpClient):
    """The twilio package's async HTTP client, pointed at a configurable API base URL."""

    def __init__(self, base_url: str) -> None:
        super().__init__(timeout=TWILIO_TIMEOUT_S)
        self._base = base_url.rstrip("/")

    async def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:  # type: ignore[override]
        if self._base != TWILIO_API and url.startswith(TWILIO_API):
            url = self._base + url.removeprefix(TWILIO_API)
        return await super().request(method, url, *args, **kwargs)


def make_twilio_client(settings: Settings) -> TwilioClient | None:
    """The REST client for call control; None without an account SID and auth token."""
    token = settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else ""
    if not settings.twilio_account_sid or not token:
        return None
    http = _TwilioHttpClient(settings.twilio_api_base_url)
    return TwilioClient(settings.twilio_account_sid, token, http_client=http)


async def close_twilio_client(client: TwilioClient | None) -> None:
    if client is not None and isinstance(client.http_client, AsyncTwilioHttpClient):
        await client.http_client.close()


class TwilioCallActions:
    transport = "twilio"

    def __init__(self, client: TwilioClient | None, call_sid: str, transfer_number: str | None) -> None:
        self._client = client
        self._call_sid = call_sid
        self._number = transfer_number

    @property
    def can_transfer(self) -> bool:
        return self._client is not None and bool(self._number)

    async def transfer(self) -> str:
        if self._client is None or not self._number:
            raise ActionUnavailable("no Twilio credentials or transfer number")
        twiml = VoiceResponse()
        twiml.dial(self._number)
        await self._client.calls(self._call_sid).update_async(twiml=str(twiml))
        return self._number

    async def hang_up(self) -> None:
        if self._client is None:
            raise ActionUnavailable("no Twilio credentials: the media stream is closed instead")
        await self._client.calls(self._call_sid).update_async(status="completed")
