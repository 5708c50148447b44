"""A client event the real server would refuse, in either API the simulator speaks (Realtime,
GPT-Live); the session turns it into that API's ``error`` server event."""

from __future__ import annotations


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
