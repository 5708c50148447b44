"""Token auth of the policy editor: roles ``editor`` (read drafts, write) and ``viewer``.

Tokens come from settings (``editor_tokens`` / ``viewer_tokens``: person → token) and are
sent as ``Authorization: Bearer <token>``; the name becomes the author of a saved version.
Every token is compared in constant time (``hmac.compare_digest`` over SHA-256 digests, so
not even a token's length shows), all of them, so timing does not tell which one nearly
matched. Tokens are never logged. No cookies are involved: a cross-site form or script
cannot attach the header without a CORS preflight this service never answers, which makes
the write endpoints CSRF-safe; writes also require a JSON body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Literal

import structlog
from aiohttp import web
from pydantic import SecretStr

from infra.http import bearer_token

Role = Literal["editor", "viewer"]
MIN_TOKEN = 16  # shorter tokens still work, with a warning at startup

log = structlog.get_logger("editor")


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role

    @property
    def can_edit(self) -> bool:
        return self.role == "editor"


class TokenAuth:
    def __init__(self, editors: dict[str, SecretStr], viewers: dict[str, SecretStr]) -> None:
        self._tokens: list[tuple[bytes, Principal]] = [
            (_digest(token.get_secret_value()), Principal(name, "editor"))
            for name, token in editors.items()
            if token.get_secret_value()
        ] + [
            (_digest(token.get_secret_value()), Principal(name, "viewer"))
            for name, token in viewers.items()
            if token.get_secret_value()
        ]

    def audit(self, editors: dict[str, SecretStr], viewers: dict[str, SecretStr]) -> None:
        """Startup log: who may use the editor, and which tokens are too short (names only)."""
        everyone = {**viewers, **editors}
        weak = [name for name, t in everyone.items() if 0 < len(t.get_secret_value()) < MIN_TOKEN]
        if weak:
            log.warning("editor.weak_tokens", people=sorted(weak), min_length=MIN_TOKEN)
        if not self._tokens:
            log.info("editor.locked", reason="no RESPONDER_EDITOR_TOKENS or RESPONDER_VIEWER_TOKENS set")
        else:
            log.info("editor.access", editors=sorted(editors), viewers=sorted(viewers))

    def identify(self, request: web.Request) -> Principal | None:
        token = bearer_token(request.headers)
        if token is None:
            return None
        offered = _digest(token)
        found: Principal | None = None
        for token, principal in self._tokens:
            if hmac.compare_digest(token, offered) and found is None:
                found = principal
        return found

    def require(self, request: web.Request, role: Role = "viewer") -> Principal:
        """The caller's principal; 401 without a valid token, 403 when an editor is needed."""
        principal = self.identify(request)
        if principal is None:
            raise _error(web.HTTPUnauthorized, "a valid token is required (Authorization: Bearer …)")
        if role == "editor" and not principal.can_edit:
            raise _error(web.HTTPForbidden, "this needs the editor role")
        return principal


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def _error(cls: type[web.HTTPException], message: str) -> web.HTTPException:
    headers = {"WWW-Authenticate": "Bearer"} if cls is web.HTTPUnauthorized else None
    return cls(text=json.dumps({"error": message}), content_type="application/json", headers=headers)
