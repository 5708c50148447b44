"""OpenAI call control behind ``escalate_to_human`` and ``end_call`` for calls OpenAI carries
(SIP and browser WebRTC): ``refer`` / ``hangup`` of the ``openai`` SDK, on the call's engine —
``client.realtime.calls`` (``rtc_…`` ids) or ``client.live.sessions`` (``live_…`` ids)."""

from __future__ import annotations

from openai import AsyncOpenAI

from responder.core.actions import ActionUnavailable
from responder.core.engine import EngineName

OPENAI_CALL_TIMEOUT_S = 10.0  # per request; the SDK's default (10 minutes) would hold a call open


class OpenAICallActions:
    """SIP (``refer`` to a phone number or SIP URI) and WebRTC (hang-up only)."""

    def __init__(
        self, client: AsyncOpenAI, call_id: str, transport: str, refer_uri: str | None,
        engine: EngineName = "realtime",
    ) -> None:  # fmt: skip
        self._client = client
        self._call_id = call_id
        self.transport = transport
        self._refer_uri = refer_uri
        self._calls = client.live.sessions if engine == "live" else client.realtime.calls

    @property
    def can_transfer(self) -> bool:
        return bool(self._refer_uri)

    async def transfer(self) -> str:
        if not self._refer_uri:
            raise ActionUnavailable("no escalation SIP URI configured")
        await self._calls.refer(self._call_id, target_uri=self._refer_uri, timeout=OPENAI_CALL_TIMEOUT_S)
        return self._refer_uri

    async def hang_up(self) -> None:
        await self._calls.hangup(self._call_id, timeout=OPENAI_CALL_TIMEOUT_S)
