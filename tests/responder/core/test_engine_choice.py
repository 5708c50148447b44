"""A call's engine chosen from outside (``?engine=`` on the Twilio webhook and /calls/ws, the
Media Stream's ``customParameters``): only a known name is ever taken, whatever is sent, so
nothing of the value reaches TwiML, a log line or the call record."""

from __future__ import annotations

import secrets
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from twilio.request_validator import RequestValidator
from yarl import URL

from infra.settings import Settings
from responder.core.engine import engine_named
from tests.support.service import AUTH_TOKEN
from tests.support.twilio import stream_parameters, webhook_params

HOSTILE = ["Live", " live", "live\n", 'live"/><Hangup/>', "live&engine=x", "x" * 100_000, "", "realtime\x00"]


@pytest.mark.parametrize("value", [*HOSTILE, None, ["live"], {"live": 1}, 1, True])
def test_only_a_known_engine_name_is_taken(value: object) -> None:
    assert engine_named(value, "realtime") == "realtime"
    assert engine_named(value, "live") == "live"


def test_the_known_names() -> None:
    assert engine_named("live", "realtime") == "live" and engine_named("realtime", "live") == "realtime"


async def test_a_hostile_engine_value_on_the_webhook_gets_the_default_in_the_twiml(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    svc = await start_service(make_settings(engine="realtime"))
    async with aiohttp.ClientSession() as http:
        for value in ['live"/><Hangup/>', "x" * 4000, "live"]:
            url = svc.url + "/twilio/voice?engine=" + urllib.parse.quote(value, safe="")
            params = webhook_params("CA" + secrets.token_hex(16))
            headers = {"X-Twilio-Signature": RequestValidator(AUTH_TOKEN).compute_signature(url, params)}
            async with http.post(URL(url, encoded=True), data=params, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                body = await resp.text()
            parameters = stream_parameters(ET.fromstring(body))
            assert parameters is not None
            assert parameters["engine"] == ("live" if value == "live" else "realtime")
            assert "Hangup" not in body and "xxxx" not in body
