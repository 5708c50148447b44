"""The trace viewer: ``/traces`` (recent calls), ``/traces/{call_id}`` (one call), their JSON API.

Plain HTML + vanilla JS from ``responder/web/trace/`` (no CDN, no build step). Every page
and API needs the admin token (:mod:`responder.web.trace_auth`); a page asked for without
it answers 401 with the login form. Call ids are checked before they reach Redis.

``/policies/{id}/versions/{version}`` returns the exact text of a policy version, for the
links on each decision: from the versioned policy store when the app has one, else from the
policy files when their version matches; 404 otherwise.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from redis.exceptions import RedisError

from infra.settings import Settings
from responder.runtime.services import SERVICES
from responder.trace import recent_traces, trace_from_redis, valid_call_id
from responder.web.editor_routes import POLICIES
from responder.web.trace_auth import Access, AdminAuth, same_site
from supervisor.policy_format import ID_RE
from supervisor.policy_store import StoreError

log = structlog.get_logger("web.trace")

STATIC_DIR = Path(__file__).resolve().parent / "trace"
STATIC_FILES = {
    "trace.js": "text/javascript",
    "trace.css": "text/css",
    "login.js": "text/javascript",
}
OUTCOMES = frozenset({"ok", "fallback", "timeout", "error"})
_AUTH: web.AppKey[AdminAuth] = web.AppKey("trace_admin_auth", AdminAuth)
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make a browser send Origin: null with the forms
    "Cache-Control": "no-store",
}


def add_trace_routes(app: web.Application, settings: Settings) -> None:
    app[_AUTH] = AdminAuth(settings)
    r = app.router
    r.add_get("/traces", _list_page)
    r.add_post("/traces/login", _login)
    r.add_post("/traces/logout", _logout)
    r.add_get("/traces/static/{name}", _static)
    r.add_get("/traces/{call_id}", _call_page)
    r.add_get("/api/traces", _api_list)
    r.add_get("/api/traces/{call_id}", _api_trace)
    if not any(getattr(res, "canonical", "") == "/policies/{id}/versions/{version}" for res in r.resources()):
        r.add_get("/policies/{id}/versions/{version}", _policy_version)


# -- helpers ----------------------------------------------------------------------------------
def _page(name: str, status: int = 200, retry_after_s: int = 0) -> web.Response:
    body = (STATIC_DIR / name).read_text(encoding="utf-8")
    headers = {**_HEADERS, "Retry-After": str(retry_after_s)} if retry_after_s else _HEADERS
    return web.Response(text=body, content_type="text/html", status=status, headers=headers)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers=_HEADERS)


async def admin_allowed(request: web.Request) -> bool:
    """The operator's admin token (bearer header or the viewer's sign-in session)."""
    auth = request.app.get(_AUTH)
    return auth is not None and (await auth.access(request)).allowed


_REFUSALS = {"denied": 401, "throttled": 429, "unavailable": 503}


def _login_page(access: Access) -> web.Response:
    return _page("login.html", status=_REFUSALS[access.verdict], retry_after_s=access.retry_after_s)


async def _denied_api(request: web.Request) -> web.Response | None:
    access = await request.app[_AUTH].access(request)
    if access.allowed:
        return None
    message = {
        "denied": "admin token required (Authorization: Bearer …)",
        "throttled": "too many wrong admin tokens: try again later",
        "unavailable": "sign-in sessions are unavailable: try again",
    }[access.verdict]
    response = _json({"error": message}, status=_REFUSALS[access.verdict])
    if access.retry_after_s:
        response.headers["Retry-After"] = str(access.retry_after_s)
    return response


def _cross_site(request: web.Request) -> web.Response | None:
    """403 for a sign-in or logout that another site's page sent (CSRF)."""
    if same_site(request):
        return None
    origin = request.headers.get("Origin", "")[:100]
    log.warning("trace_viewer.cross_site_refused", path=request.path, origin=origin)
    return web.Response(text="cross-site request refused", status=403, headers=_HEADERS)


def _call_id(request: web.Request) -> str:
    call_id = request.match_info["call_id"]
    if not valid_call_id(call_id):
        raise web.HTTPBadRequest(text="invalid call id", headers=_HEADERS)
    return call_id


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError as exc:
        raise web.HTTPBadRequest(text="since/until must be epoch seconds", headers=_HEADERS) from exc


# -- pages ------------------------------------------------------------------------------------
async def _list_page(request: web.Request) -> web.Response:
    access = await request.app[_AUTH].access(request)
    return _page("index.html") if access.allowed else _login_page(access)


async def _call_page(request: web.Request) -> web.Response:
    access = await request.app[_AUTH].access(request)
    if not access.allowed:
        return _login_page(access)
    _call_id(request)
    return _page("call.html")


async def _static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound()
    body = (STATIC_DIR / name).read_text(encoding="utf-8")
    return web.Response(text=body, content_type=STATIC_FILES[name], headers=_HEADERS)


async def _login(request: web.Request) -> web.Response:
    """The sign-in form: a same-site POST with the right token starts a session (303)."""
    refused = _cross_site(request)
    if refused is not None:
        return refused
    auth = request.app[_AUTH]
    if request.content_type != "application/x-www-form-urlencoded":  # what the sign-in page sends
        raise web.HTTPUnsupportedMediaType(text="expected application/x-www-form-urlencoded")
    try:
        form = await request.post()
    except (ValueError, LookupError):  # undecodable, or a charset nobody knows: as the webhook
        raise web.HTTPBadRequest(text="malformed form body") from None
    token = form.get("token")
    access = await auth.try_token(request, token) if isinstance(token, str) and token.strip() else None
    if access is None or not access.allowed:
        return _login_page(access or Access("denied"))
    target = form.get("next")
    safe = isinstance(target, str) and target.startswith("/traces") and "//" not in target
    response = web.HTTPSeeOther(target if safe else "/traces")  # type: ignore[arg-type]
    try:
        await auth.start_session(request, response)
    except RedisError:
        return _login_page(Access("unavailable", 2))
    log.info("trace_viewer.signed_in")
    raise response


async def _logout(request: web.Request) -> web.Response:
    """POST only, same-site only: the session is revoked in Redis, the cookie cleared."""
    refused = _cross_site(request)
    if refused is not None:
        return refused
    response = web.HTTPSeeOther("/traces")
    try:
        await request.app[_AUTH].end_session(request, response)
    except RedisError:
        return web.Response(text="sign-in sessions are unavailable: try again", status=503, headers=_HEADERS)
    log.info("trace_viewer.signed_out")
    raise response


# -- JSON API ---------------------------------------------------------------------------------
async def _api_list(request: web.Request) -> web.Response:
    denied = await _denied_api(request)
    if denied is not None:
        return denied
    q = request.query
    since, until = _number(q.get("since")), _number(q.get("until"))
    outcome, policy = q.get("outcome") or None, (q.get("policy") or "").strip()
    if outcome is not None and outcome not in OUTCOMES:
        return _json({"error": f"outcome must be one of {sorted(OUTCOMES)}"}, status=400)
    try:
        limit = max(1, min(int(q.get("limit", "100")), 500))
    except ValueError:
        return _json({"error": "limit must be an integer"}, status=400)
    rows = await recent_traces(request.app[SERVICES].history, limit)

    def keep(row: Any) -> bool:
        started = row.started_at or 0.0
        return (
            (since is None or started >= since)
            and (until is None or started <= until)
            and (outcome is None or row.outcome == outcome)
            and (not policy or any(p == policy or p.split("@")[0] == policy for p in row.policies))
        )

    calls = [r.model_dump(mode="json") for r in rows if keep(r)]
    return _json({"calls": calls, "now": time.time()})


async def _api_trace(request: web.Request) -> web.Response:
    denied = await _denied_api(request)
    if denied is not None:
        return denied
    call_id = _call_id(request)
    trace = await trace_from_redis(request.app[SERVICES].history, call_id)
    if trace is None:
        return _json({"error": "no such call"}, status=404)
    return _json({**trace.as_json(), "active": trace.status == "active"})


async def _policy_version(request: web.Request) -> web.Response:
    """The exact text of ``id@version``: store first, then the policy files; 404 otherwise."""
    denied = await _denied_api(request)
    if denied is not None:
        return denied
    policy_id, version = request.match_info["id"], request.match_info["version"]
    if not ID_RE.fullmatch(policy_id) or not version.isdigit():
        raise web.HTTPBadRequest(text="invalid policy id or version", headers=_HEADERS)
    text = await _stored_version(request.app, policy_id, int(version))
    if text is None:
        raise web.HTTPNotFound(text=f"{policy_id}@{version} not found", headers=_HEADERS)
    return web.Response(text=text, content_type="text/plain", charset="utf-8", headers=_HEADERS)


async def _stored_version(app: web.Application, policy_id: str, version: int) -> str | None:
    policies = app.get(POLICIES)
    if policies is not None:
        try:
            return (await policies.store.get_version(policy_id, version)).content
        except StoreError:
            pass
    path = Path(app[SERVICES].settings.policies_dir) / f"{policy_id}.md"
    if path.is_file():
        content = path.read_text(encoding="utf-8")
        if f"\nversion: {version}\n" in content.split("\n---", 1)[0] + "\n":
            return content
    return None
