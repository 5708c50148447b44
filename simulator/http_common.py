"""HTTP helpers shared by the simulator's REST routes: bearer check and OpenAI-style errors."""

from __future__ import annotations

from aiohttp import web


def has_bearer(request: web.Request) -> bool:
    """Whether the request carries ``Authorization: Bearer <non-empty>`` (any key is accepted)."""
    auth = request.headers.get("Authorization", "")
    return auth.startswith("Bearer ") and bool(auth.removeprefix("Bearer ").strip())


def openai_error(
    status: int,
    message: str,
    code: str | None,
    *,
    param: str | None = None,
    type_: str = "invalid_request_error",
) -> web.Response:
    """``{"error": {"message", "type", "param", "code"}}`` with ``status``, as the API answers."""
    error = {"message": message, "type": type_, "param": param, "code": code}
    return web.json_response({"error": error}, status=status)


def unauthorized() -> web.Response:
    return openai_error(401, "Missing bearer authentication in header.", "invalid_api_key")
