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

from infra.settings import Settings
from responder.runtime.services import SERVICES
from responder.trace import recent_traces, trace_from_redis, valid_call_id
from responder.web.editor_routes import POLICIES
from responder.web.trace_auth import AdminAuth
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
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def add_trace_routes(app: web.Application, settings: Settings) -> None:
    app[_AUTH] = AdminAuth(settings.admin_token)
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
def _page(name: str, status: int = 200) -> web.Response:
    body = (STATIC_DIR / name).read_text(encoding="utf-8")
    return web.Response(text=body, content_type="text/html", status=status, headers=_HEADERS)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers=_HEADERS)


def admin_allowed(request: web.Request) -> bool:
    """The operator's admin token (bearer header or the viewer's sign-in cookie)."""
    auth = request.app.get(_AUTH)
    return auth is not None and auth.allowed(request)


def _denied_api(request: web.Request) -> web.Response | None:
    if request.app[_AUTH].allowed(request):
        return None
    return _json({"error": "admin token required (Authorization: Bearer …)"}, status=401)


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
    if not request.app[_AUTH].allowed(request):
        return _page("login.html", status=401)
    return _page("index.html")


async def _call_page(request: web.Request) -> web.Response:
    if not request.app[_AUTH].allowed(request):
        return _page("login.html", status=401)
    _call_id(request)
    return _page("call.html")


async def _static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound()
    body = (STATIC_DIR / name).read_text(encoding="utf-8")
    return web.Response(text=body, content_type=STATIC_FILES[name], headers=_HEADERS)


async def _login(request: web.Request) -> web.Response:
    auth = request.app[_AUTH]
    form = await request.post()
    token = form.get("token")
    if not isinstance(token, str) or not auth.check_token(token):
        log.warning("trace_viewer.login_failed", remote=request.remote)
        return _page("login.html", status=401)
    target = form.get("next")
    safe = isinstance(target, str) and target.startswith("/traces") and "//" not in target
    response = web.HTTPSeeOther(target if safe else "/traces")  # type: ignore[arg-type]
    auth.set_cookie(response, secure=request.secure)
    raise response


async def _logout(request: web.Request) -> web.Response:
    response = web.HTTPSeeOther("/traces")
    response.del_cookie("responder_admin", path="/")
    raise response


# -- JSON API ---------------------------------------------------------------------------------
async def _api_list(request: web.Request) -> web.Response:
    denied = _denied_api(request)
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
    denied = _denied_api(request)
    if denied is not None:
        return denied
    call_id = _call_id(request)
    trace = await trace_from_redis(request.app[SERVICES].history, call_id)
    if trace is None:
        return _json({"error": "no such call"}, status=404)
    return _json({**trace.as_json(), "active": trace.status == "active"})


async def _policy_version(request: web.Request) -> web.Response:
    """The exact text of ``id@version``: store first, then the policy files; 404 otherwise."""
    denied = _denied_api(request)
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
