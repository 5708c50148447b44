"""A stand-in for Twilio's REST API (call updates only): a test double for offline tests.

``POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`` with HTTP basic auth
(account SID : auth token, given at construction; ``401`` otherwise) and the form fields
Twilio takes for a call update (``Url``, ``Method``, ``Status``, ``FallbackUrl``,
``FallbackMethod``, ``StatusCallback``, ``StatusCallbackMethod``, ``Twiml``, ``TimeLimit``).
It answers with a call resource shaped like Twilio's (``sid``, ``status``, ``account_sid``,
``to``, ``from``, dates in RFC 2822, ``uri``…), which the ``twilio`` package's client parses;
errors come as Twilio's ``{"code", "message", "more_info", "status"}``.

Every accepted update is kept in :attr:`TwilioRestStandIn.updates`. An update that takes
the call off its ``<Connect><Stream>`` — ``Status=completed``/``canceled``, or new TwiML /
``Url`` (e.g. ``<Dial>`` to a person) — ends the media stream as Twilio does: the
:class:`CallEnd` handle of that call fires, and the simulated caller
(:func:`simulator.caller.place_call` with ``ended=…``) sends ``stop`` and closes
the socket. Calls must be registered first (:meth:`TwilioRestStandIn.register_call`);
unknown call SIDs get ``404`` and updates of a finished call ``400`` (code 21220).

Use::

    async with TwilioRestStandIn(account_sid, auth_token) as rest:
        ended = rest.register_call(call_sid)
        client = rest.client()       # twilio Client(…, http_client=AsyncTwilioHttpClient()) → here
        report = await place_call(url, scenario, auth_token=…, call_sid=call_sid,
                                  account_sid=account_sid, ended=ended)
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import inspect
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

import structlog
from aiohttp import web
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

log = structlog.get_logger("simulator.twilio_rest")

API_VERSION = "2010-04-01"
UPDATE_FIELDS = frozenset(
    {
        "Url",
        "Method",
        "Status",
        "FallbackUrl",
        "FallbackMethod",
        "StatusCallback",
        "StatusCallbackMethod",
        "Twiml",
        "TimeLimit",
    }
)
END_STATUSES = frozenset({"completed", "canceled"})


@dataclass
class CallEnd:
    """Fires when a REST update takes the call off its media stream; ``reason`` says how."""

    call_sid: str
    reason: str | None = None
    _event: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def trigger(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self._event.set()

    @property
    def fired(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()


@dataclass(frozen=True)
class CallUpdate:
    """One accepted ``POST …/Calls/{sid}.json``: the form fields exactly as sent."""

    call_sid: str
    fields: dict[str, str]

    @property
    def status(self) -> str | None:
        return self.fields.get("Status")

    @property
    def twiml(self) -> str | None:
        return self.fields.get("Twiml")

    def dial_target(self) -> str | None:
        """The number (or SIP URI) of a ``<Dial>`` in the TwiML, if any."""
        if not self.twiml:
            return None
        dial = ET.fromstring(self.twiml).find(".//Dial")
        if dial is None:
            return None
        nested = next(iter(dial), None)
        return ((nested.text if nested is not None else dial.text) or "").strip() or None


@dataclass
class _Call:
    sid: str
    from_: str
    to: str
    status: str = "in-progress"
    ended: CallEnd | None = None


OnUpdate = Callable[[CallUpdate], Awaitable[None] | None]


def _error(status: int, code: int, message: str) -> web.Response:
    body = {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}"}
    return web.json_response({**body, "status": status}, status=status)


class TwilioRestStandIn:
    """The stand-in server: an aiohttp app plus the calls it knows and the updates it took."""

    def __init__(self, account_sid: str, auth_token: str, *, on_update: OnUpdate | None = None) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.on_update = on_update
        self.updates: list[CallUpdate] = []
        self.calls: dict[str, _Call] = {}
        self.base_url: str | None = None
        self.app = web.Application(client_max_size=256 * 1024)
        self.app.router.add_post(f"/{API_VERSION}/Accounts/{{account}}/Calls/{{call}}.json", self._update)
        self._runner: web.AppRunner | None = None

    def register_call(
        self, call_sid: str, *, from_: str = "+15555550123", to: str = "+15555550100"
    ) -> CallEnd:
        """Make a live call known; returns the handle that fires when an update ends its stream."""
        call = _Call(call_sid, from_, to, ended=CallEnd(call_sid))
        self.calls[call_sid] = call
        assert call.ended is not None
        return call.ended

    # --- server --------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (0: a free port); returns the base URL (``http://host:port``)."""
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.base_url = f"http://{host}:{self._runner.addresses[0][1]}"
        return self.base_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> TwilioRestStandIn:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def client(self) -> Client:
        """A real ``twilio`` client (async HTTP) whose API domain points at this stand-in."""
        if self.base_url is None:
            raise RuntimeError("start the stand-in first")
        client = Client(self.account_sid, self.auth_token, http_client=AsyncTwilioHttpClient())
        client.api.base_url = self.base_url
        return client

    # --- the endpoint --------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return user == self.account_sid and password == self.auth_token

    async def _update(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, 20003, "Authenticate")
        account, sid = request.match_info["account"], request.match_info["call"]
        call = self.calls.get(sid)
        if account != self.account_sid or call is None:
            return _error(
                404,
                20404,
                f"The requested resource /{API_VERSION}/Accounts/{account}/Calls/{sid}.json was not found",
            )
        form = await request.post()
        fields = {k: str(v) for k, v in form.items() if k in UPDATE_FIELDS}
        problem = _check(fields)
        if problem is not None:
            log.warning("simulator.twilio_rest.update_refused", call_sid=sid, reason=problem[1])
            return _error(400, *problem)
        if call.status != "in-progress":
            return _error(400, 21220, "Call is not in-progress. Cannot redirect.")
        update = CallUpdate(sid, fields)
        self.updates.append(update)
        self._apply(call, update)
        log.info(
            "simulator.twilio_rest.call_updated", call_sid=sid, fields=sorted(fields), status=call.status
        )
        if self.on_update is not None:
            result = self.on_update(update)
            if inspect.isawaitable(result):
                await result
        return web.json_response(self._resource(call))

    def _apply(self, call: _Call, update: CallUpdate) -> None:
        assert call.ended is not None
        if update.status in END_STATUSES:
            call.status = "completed" if update.status == "completed" else "canceled"
            call.ended.trigger(update.status)
        elif update.twiml is not None:
            target = update.dial_target()
            hangs_up = ET.fromstring(update.twiml).find(".//Hangup") is not None
            if hangs_up and target is None:
                call.status = "completed"
            call.ended.trigger(f"dial:{target}" if target else ("completed" if hangs_up else "twiml"))
        elif "Url" in update.fields:
            call.ended.trigger("redirect:" + update.fields["Url"])

    def _resource(self, call: _Call) -> dict[str, Any]:
        now = formatdate(usegmt=True)
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{call.sid}"
        done = call.status in ("completed", "canceled")
        return {
            "sid": call.sid,
            "account_sid": self.account_sid,
            "parent_call_sid": None,
            "date_created": now,
            "date_updated": now,
            "start_time": now,
            "end_time": now if done else None,
            "duration": "0" if done else None,
            "to": call.to,
            "to_formatted": call.to,
            "from": call.from_,
            "from_formatted": call.from_,
            "phone_number_sid": None,
            "status": call.status,
            "direction": "inbound",
            "answered_by": None,
            "api_version": API_VERSION,
            "forwarded_from": None,
            "group_sid": None,
            "caller_name": None,
            "queue_time": "0",
            "trunk_sid": None,
            "price": None,
            "price_unit": "USD",
            "uri": uri + ".json",
            "subresource_uris": {
                "notifications": uri + "/Notifications.json",
                "recordings": uri + "/Recordings.json",
                "streams": uri + "/Streams.json",
            },
        }


def _check(fields: dict[str, str]) -> tuple[int, str] | None:
    """Twilio's refusal (code, message) for an update it would not take, else ``None``."""
    if not fields.keys() & {"Url", "Twiml", "Status"}:
        return 21218, "One of Url, Twiml or Status is required."
    if "Url" in fields and "Twiml" in fields:
        return 21218, "Url and Twiml are mutually exclusive."
    if "Status" in fields and fields["Status"] not in END_STATUSES:
        return 21218, f"Invalid Status: {fields['Status']}. Must be completed or canceled."
    if "Twiml" in fields:
        try:
            root = ET.fromstring(fields["Twiml"])
        except ET.ParseError:
            return 12100, "Document parse failure: Twiml is not well-formed XML."
        if root.tag != "Response":
            return 12100, "Document parse failure: the root element must be <Response>."
    return None
