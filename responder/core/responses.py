"""Which reply of the engine is active, which ones we asked for, and when it is safe to ask again.

The Realtime API refuses ``response.create`` while a response is active
(``conversation_already_has_active_response``). The engine also starts replies on its own
(turn detection), and a reply we ask for is only known once it has started (``response.created``).
This tracker keeps that state in one place; the call controller consults :meth:`idle`
before sending anything that would start a response.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from responder.core.engine import TURN

REQUEST_TTL_S = 5.0  # a request neither created nor refused by then is considered lost


@dataclass
class ActiveResponse:
    id: str
    purpose: str  # a Purpose when we asked for it; the engine echoes whatever it was given
    tool_calls: list[str] = field(default_factory=list)


class ResponseTracker:
    def __init__(self, clock: Callable[[], float] = time.monotonic, vad_grace_s: float = 2.0) -> None:
        self._clock = clock
        self._vad_grace_s = vad_grace_s
        self._requests: dict[str, tuple[str, float]] = {}  # event id → (purpose, sent at)
        self._grace_until = 0.0
        self.active: ActiveResponse | None = None
        # responses whose audio must not reach the caller any more (barge-in)
        self.interrupted: set[str] = set()

    def request_sent(self, event_id: str, purpose: str) -> None:
        self._requests[event_id] = (purpose, self._clock())

    def created(self, response_id: str, tag: str | None) -> ActiveResponse:
        """``response.created``: ``tag`` is the purpose we put in the response's metadata."""
        if tag is not None:
            oldest = next((eid for eid, (p, _) in self._requests.items() if p == tag), None)
            if oldest is not None:
                del self._requests[oldest]
        else:
            self._grace_until = 0.0  # the response turn detection was about to start is here
        self.active = ActiveResponse(id=response_id, purpose=tag or TURN)
        return self.active

    def done(self, response_id: str) -> ActiveResponse | None:
        """``response.done``: returns the response that ended, if it was the active one."""
        finished = self.active
        if finished is None or (response_id and finished.id != response_id):
            return None
        self.active = None
        return finished

    def rejected(self, event_id: str | None) -> str | None:
        """An ``error`` for one of our ``response.create`` events: its purpose, if it was ours."""
        entry = self._requests.pop(event_id, None) if event_id else None
        return entry[0] if entry else None

    def speech_stopped(self) -> None:
        """Turn detection will start a response shortly: don't ask for one in the meantime."""
        self._grace_until = self._clock() + self._vad_grace_s

    def grace_remaining(self) -> float:
        return max(0.0, self._grace_until - self._clock())

    def idle(self) -> bool:
        """True when a ``response.create`` would not collide with another response."""
        self._prune()
        return self.active is None and not self._requests and self.grace_remaining() == 0.0

    def _prune(self) -> None:
        now = self._clock()
        for eid in [e for e, (_, at) in self._requests.items() if now - at > REQUEST_TTL_S]:
            del self._requests[eid]
