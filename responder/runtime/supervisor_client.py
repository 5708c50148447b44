"""The supervisor over HTTP: the responder's client of ``responder supervisor serve``.

:class:`RemoteSupervisor` has the in-process supervisor's contract (``decide(call_id, context,
user_item_id=…)`` → :class:`~callrecord.decisions.Decision`, never raising) and is used when
``RESPONDER_SUPERVISOR_URL`` is set. One keep-alive connection pool per process.

* 429, 5xx and connection errors are retried with exponential backoff and jitter, honouring
  ``Retry-After``, all inside the supervisor deadline (``supervisor_deadline_s``); other 4xx
  (401 wrong token, 400 bad request) are not retried.
* Each try tells the service how much of the deadline is left (``deadline_s``), so the
  service's own timeout decision comes back before the client gives up on it.
* Every try of one decision carries the same ``request_id``: a retry of a try that the service
  did answer (a proxy's 502 or a reset connection on the way back) gets that decision back
  instead of a second one being decided and recorded (supervisor/idempotency.py).
* A successful decision was recorded on the call by the service. When no decision comes back,
  the client makes the spoken fallback itself, records it on the call
  (``CallHistory.add_decision``) and logs it as ``supervisor.decision``, like the in-process
  supervisor does for its failures: the audit trail has every decision.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

import aiohttp
import structlog
from prometheus_client import Counter
from pydantic import ValidationError
from yarl import URL

from callrecord.decisions import Decision, Outcome, Trigger
from callrecord.history import CallHistory
from infra.metrics import REGISTRY
from infra.settings import Settings
from supervisor.agent import FALLBACK_TEXT
from supervisor.retry import Backoff, retry_after_s, retryable_status

log = structlog.get_logger("supervisor_client")

DECIDE_PATH = "/v1/decide"
# what the service needs after its own deadline: recording the decision, the HTTP round trip
SERVICE_SLACK_S = 0.3
MAX_SERVICE_DEADLINE_S = 600.0  # the service refuses a longer deadline_s (400)

CLIENT_RETRIES = Counter(
    "responder_supervisor_client_retries",
    "Retried requests to the supervisor service, by status (0 = connection error)",
    ["status"],
    registry=REGISTRY,
)


@dataclass
class _Try:
    """What one try ended with, when it did not bring a decision."""

    error: str
    status: int | None = None
    retry: bool = False
    retry_after: float | None = None
    outcome: Outcome = "error"


class RemoteSupervisor:
    def __init__(
        self,
        url: str,
        history: CallHistory,
        *,
        token: str | None,
        deadline_s: float,
        backoff: Backoff | None = None,
        model_name: str = "",
        fallback_text: str = FALLBACK_TEXT,
    ) -> None:
        parsed = URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:  # fail at startup, not per call
            raise ValueError("RESPONDER_SUPERVISOR_URL must be an http:// or https:// URL with a host")
        self.endpoint = url.rstrip("/") + DECIDE_PATH
        self.history = history
        self.deadline_s = deadline_s
        self.backoff = backoff or Backoff()
        self.model_name = model_name
        self.fallback_text = fallback_text
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, settings: Settings, history: CallHistory) -> RemoteSupervisor:
        if not settings.supervisor_url:
            raise ValueError("supervisor_url is not set")
        token = settings.supervisor_token.get_secret_value() if settings.supervisor_token else None
        if not token:
            token = None
            log.warning("supervisor_client.no_token", reason="RESPONDER_SUPERVISOR_TOKEN is not set")
        backoff = Backoff(
            attempts=settings.supervisor_retry_attempts,
            base_s=settings.supervisor_retry_base_s,
            max_s=settings.supervisor_retry_max_s,
        )
        return cls(
            settings.supervisor_url,
            history,
            token=token,
            deadline_s=settings.supervisor_deadline_s,
            backoff=backoff,
            model_name=settings.supervisor_model,
        )

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # idle connections are dropped before the service's own limit (RESPONDER_HTTP_READ_TIMEOUT_S,
            # 15 s) closes them, so that a pooled one is not reused just as the service closes it
            connector = aiohttp.TCPConnector(limit=100, keepalive_timeout=10)
            self._session = aiohttp.ClientSession(connector=connector, headers=self._headers)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def decide(
        self, call_id: str, context: str, *, user_item_id: str | None = None, trigger: Trigger = "tool_call"
    ) -> Decision:
        """The service's decision, or a recorded fallback by the deadline; never raises."""
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.deadline_s
        blog = log.bind(call_id=call_id)
        request_id = "req_" + uuid.uuid4().hex  # the same on every try: the service dedupes on it
        attempt = 0
        while True:
            attempt += 1
            left = deadline - loop.time()
            payload = {
                "call_id": call_id,
                "context": context,
                "user_item_id": user_item_id,
                "trigger": trigger,
                "request_id": request_id,
                "deadline_s": round(min(max(left - SERVICE_SLACK_S, 0.1), MAX_SERVICE_DEADLINE_S), 3),
            }
            try:
                async with asyncio.timeout(max(left, 0.0)):
                    result = await self._post(payload)
            except TimeoutError:
                result = _Try(f"no answer within the {self.deadline_s:g}s deadline", outcome="timeout")
            if isinstance(result, Decision):
                blog.info(
                    "supervisor_client.decision", decision_id=result.decision_id, outcome=result.outcome,
                    attempts=attempt, ms=round((time.perf_counter() - started) * 1000, 1),
                )  # fmt: skip
                return result
            wait = (
                self.backoff.next_delay(attempt, result.retry_after, deadline - loop.time())
                if result.retry
                else None
            )
            if wait is None:
                break
            CLIENT_RETRIES.labels(status=str(result.status or 0)).inc()
            blog.warning(
                "supervisor_client.retry", status=result.status, attempt=attempt,
                delay_ms=round(wait * 1000, 1), error=result.error,
            )  # fmt: skip
            await asyncio.sleep(wait)
        blog.warning(
            "supervisor_client.failed", status=result.status, attempts=attempt, error=result.error,
            retryable=result.retry,
        )  # fmt: skip
        return await self._fallback(call_id, context, user_item_id, result, attempt, started, trigger)

    async def _post(self, payload: dict[str, object]) -> Decision | _Try:
        try:
            async with self._client().post(self.endpoint, json=payload) as response:
                status = response.status
                body = await response.read()
                if status == 200:
                    try:
                        return Decision.model_validate_json(body)
                    except ValidationError as exc:
                        return _Try(
                            f"unreadable decision from the service: {exc.error_count()} error(s)", 200
                        )
                return _Try(
                    f"HTTP {status}: {_detail(body)}",
                    status,
                    retry=retryable_status(status),
                    retry_after=retry_after_s(response.headers),
                )
        except (aiohttp.ClientError, OSError) as exc:  # refused, reset, DNS
            return _Try(f"{type(exc).__name__}: {exc}"[:300], None, retry=True)

    async def _fallback(
        self,
        call_id: str,
        context: str,
        user_item_id: str | None,
        failure: _Try,
        attempts: int,
        started: float,
        trigger: Trigger = "tool_call",
    ) -> Decision:
        decision = Decision(
            call_id=call_id,
            user_item_id=user_item_id,
            trigger=trigger,
            context=context,
            model=self.model_name,
            api="remote",
            text=self.fallback_text,
            outcome=failure.outcome,
            error=f"supervisor service: {failure.error} (after {attempts} attempt(s))",
        )
        decision.latency_ms = (time.perf_counter() - started) * 1000
        try:
            await self.history.add_decision(call_id, decision)
        except Exception:
            log.exception("supervisor.decision_not_stored", call_id=call_id, decision_id=decision.decision_id)
        decision.log_event()
        return decision


def _detail(body: bytes) -> str:
    """A short, printable excerpt of an error body (the service answers JSON errors)."""
    return body[:200].decode("utf-8", "replace").replace("\n", " ")
