"""The policy editor: a static page under ``/editor/`` and its JSON API under ``/editor/api/``.

A save always stores a draft; only the publish step makes a version live. Reads need a
viewer or editor token; viewers see published versions only. Drafts, saves,
publishing, rollback and try-it on the draft set need an editor token (see
:mod:`responder.web.editor_auth`). Nothing changes state on GET. Policy ids are checked
against the id pattern before they reach Redis; bodies above ``editor_max_body_bytes`` get
413; a save, publish or rollback states the version it was based on and gets 409 when that
is no longer the latest. A publish passes the policy test gate first
(:mod:`supervisor.policy_tests.gate`): when cases that pass on the live set would fail, it is
refused (422, with the gate's findings) unless the body carries an ``override_reason``,
which is kept with the new version; the suites and the gate check: :mod:`.editor_suites`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from infra.settings import Settings
from responder.runtime.services import SERVICES
from responder.web.editor_auth import Principal, TokenAuth
from responder.web.editor_parse import PARSE_POOL, preview
from supervisor.agent import Supervisor
from supervisor.policies import PolicyLibrary
from supervisor.policy_format import ID_RE, PolicyError, check_text, with_status, with_version
from supervisor.policy_store import PolicyStore, UnknownVersion, VersionConflict, VersionRecord, Which
from supervisor.policy_sync import PolicySync
from supervisor.policy_tests.gate import MIN_REASON_CHARS, PublishGate
from supervisor.policy_tests.runner import SuiteRunner
from supervisor.policy_tests.store import SuiteStore
from supervisor.suite_record import GateRecord

log = structlog.get_logger("editor")

STATIC_DIR = Path(__file__).resolve().parent / "editor"
STATIC_FILES = {
    "index.html": "text/html",
    "editor.js": "text/javascript",
    "suites.js": "text/javascript",
    "editor.css": "text/css",
}
API = "/editor/api"


@dataclass
class PolicyServices:
    sync: PolicySync
    supervisor: Supervisor
    _libraries: dict[str, tuple[int, PolicyLibrary]] = field(default_factory=dict)
    _gate: PublishGate | None = None

    @property
    def store(self) -> PolicyStore:
        return self.sync.store

    async def library(self, which: Which) -> PolicyLibrary:
        """Every policy's latest (drafts too) or published version, all searchable; rebuilt per change."""
        generation = await self.store.generation()  # read first: a change meanwhile only costs a rebuild
        cached = self._libraries.get(which)
        if cached is not None and cached[0] == generation:
            return cached[1]
        docs = [d.model_copy(update={"status": "published"}) for d in await self.store.documents(which)]
        library = PolicyLibrary(docs)
        self._libraries[which] = (generation, library)
        return library


POLICIES: web.AppKey[PolicyServices] = web.AppKey("policies", PolicyServices)


def gate_of(request: web.Request) -> PublishGate:
    """This instance's publish gate: the suites on the try-it supervisor (same prompt, tools, deadline)."""
    services = _policies(request)
    if services._gate is None:
        simulator = request.app[SERVICES].simulator_url is not None
        runner = SuiteRunner(services.supervisor, simulator=simulator)
        suites = SuiteStore(services.store.redis, services.store.prefix)
        services._gate = PublishGate(services.store, suites, runner)
    return services._gate


def gate_json(record: GateRecord) -> dict[str, Any]:
    return {**record.model_dump(), "blocked": record.blocked, "summary": record.summary()}


_AUTH: web.AppKey[TokenAuth] = web.AppKey("editor_auth", TokenAuth)


def add_editor_routes(app: web.Application, settings: Settings) -> None:
    app[_AUTH] = TokenAuth(settings.editor_tokens, settings.viewer_tokens)
    app[_AUTH].audit(settings.editor_tokens, settings.viewer_tokens)
    r = app.router
    r.add_get("/editor", _redirect)
    r.add_get("/editor/", _static)
    r.add_get("/editor/static/{name}", _static)
    r.add_get(f"{API}/me", _me)
    r.add_get(f"{API}/policies", _list)
    r.add_get(API + "/policies/{id}", _get)
    r.add_put(API + "/policies/{id}", _save)
    r.add_get(API + "/policies/{id}/history", _history)
    r.add_get(API + "/policies/{id}/diff", _diff)
    r.add_post(API + "/policies/{id}/publish", _publish)
    r.add_post(API + "/policies/{id}/rollback", _rollback)
    r.add_post(f"{API}/preview", _preview)
    r.add_post(f"{API}/try", _try)


async def _redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/editor/")


# -- plumbing ---------------------------------------------------------------------------------


def _auth(request: web.Request) -> TokenAuth:
    return request.app[_AUTH]


def _policies(request: web.Request) -> PolicyServices:
    services = request.app.get(POLICIES)
    if services is None:
        raise _fail(web.HTTPServiceUnavailable, "starting")
    return services


def _fail(cls: type[web.HTTPException], message: str, **extra: Any) -> web.HTTPException:
    return cls(text=json.dumps({"error": message, **extra}), content_type="application/json")


def _too_large(limit: int, size: int) -> web.HTTPException:
    return web.HTTPRequestEntityTooLarge(
        max_size=limit,
        actual_size=size,
        text=json.dumps({"error": f"body larger than {limit} bytes"}),
        content_type="application/json",
    )


def _policy_id(request: web.Request) -> str:
    policy_id = request.match_info["id"]
    if not ID_RE.fullmatch(policy_id):
        raise _fail(web.HTTPBadRequest, "invalid policy id")
    return policy_id


def _int(value: Any, name: str, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _fail(web.HTTPBadRequest, f"{name} must be an integer")
    try:
        return int(value)
    except ValueError:
        raise _fail(web.HTTPBadRequest, f"{name} must be an integer") from None


async def _body(request: web.Request) -> dict[str, Any]:
    """The JSON object body, read up to the size limit (413 beyond it)."""
    limit = request.app[SERVICES].settings.editor_max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit, request.content_length)
    if request.content_type != "application/json":
        raise _fail(web.HTTPUnsupportedMediaType, "send application/json")
    chunks, size = [], 0
    while chunk := await request.content.readany():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit, size)
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks))
        # "\ud800" escapes decode to lone surrogates, which no store or log can encode
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError):  # not JSON, not UTF-8, absurdly nested, lone surrogates
        raise _fail(web.HTTPBadRequest, "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _fail(web.HTTPBadRequest, "body must be a JSON object")
    return body


def _record_json(record: VersionRecord, published: int) -> dict[str, Any]:
    return {**record.model_dump(), "label": record.label(), "published_version": published}


async def _visible(store: PolicyStore, who: Principal, policy_id: str, version: int | None) -> VersionRecord:
    """The version a principal asked for; viewers only ever get published versions."""
    try:
        if version is None:
            return await store.get(policy_id, "latest" if who.can_edit else "published")
        record = await store.get_version(policy_id, version)
    except UnknownVersion as exc:
        raise _fail(web.HTTPNotFound, str(exc)) from None
    if record.status != "published" and not who.can_edit:
        raise _fail(web.HTTPForbidden, "drafts need the editor role")
    return record


# -- pages and reads --------------------------------------------------------------------------


async def _static(request: web.Request) -> web.StreamResponse:
    name = request.match_info.get("name", "index.html")
    if name not in STATIC_FILES:
        raise web.HTTPNotFound()
    return web.FileResponse(
        STATIC_DIR / name,
        headers={
            "Content-Type": STATIC_FILES[name],
            "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )


async def _me(request: web.Request) -> web.Response:
    who = _auth(request).require(request)
    return web.json_response({"name": who.name, "role": who.role})


async def _list(request: web.Request) -> web.Response:
    who = _auth(request).require(request)
    store = _policies(request).store
    which: Which = "latest" if who.can_edit else "published"
    records = await store.records(which)
    published = {r.id: r.version for r in await store.records("published")}
    query = request.query.get("q", "").strip()
    if query:
        library = await _policies(request).library(which)
        ranked = list(dict.fromkeys(h.id for h in library.search(query, k=50)))
        needle = query.lower()
        ranked += [r.id for r in records if needle in r.content.lower() and r.id not in ranked]
        by_id = {r.id: r for r in records}
        records = [by_id[i] for i in ranked if i in by_id]
    items = [
        {
            "id": r.id,
            "title": _title(r),
            "version": r.version,
            "status": r.status,
            "published_version": published.get(r.id, 0),
            "author": r.author,
            "created_at": r.created_at,
        }
        for r in records
    ]
    return web.json_response({"policies": items, "role": who.role})


def _title(record: VersionRecord) -> str:
    try:
        return record.document().title
    except PolicyError:
        return record.id


async def _get(request: web.Request) -> web.Response:
    who = _auth(request).require(request)
    policy_id = _policy_id(request)
    version = _int(request.query.get("version"), "version", allow_none=True)
    store = _policies(request).store
    record = await _visible(store, who, policy_id, version)
    return web.json_response(_record_json(record, await store.published_version(policy_id)))


async def _history(request: web.Request) -> web.Response:
    who = _auth(request).require(request)
    policy_id = _policy_id(request)
    infos = await _policies(request).store.history(policy_id)
    visible = [i.model_dump() for i in infos if who.can_edit or i.status == "published"]
    if not visible:  # a viewer learns nothing about a policy that was never published
        raise _fail(web.HTTPNotFound, f"no policy {policy_id!r}")
    return web.json_response({"id": policy_id, "versions": visible})


async def _diff(request: web.Request) -> web.Response:
    who = _auth(request).require(request)
    policy_id = _policy_id(request)
    old = _int(request.query.get("from"), "from")
    new = _int(request.query.get("to"), "to")
    store = _policies(request).store
    for version in (old, new):
        await _visible(store, who, policy_id, version)
    text = await store.diff(policy_id, old, new)  # type: ignore[arg-type]
    return web.json_response({"id": policy_id, "from": old, "to": new, "diff": text})


async def _preview(request: web.Request) -> web.Response:
    """Rendered HTML and every validation problem of an unsaved text (no state change)."""
    _auth(request).require(request)
    body = await _body(request)
    content = body.get("content")
    if not isinstance(content, str):
        raise _fail(web.HTTPBadRequest, "content must be a string")
    doc, problems, html = await PARSE_POOL.run(preview, content)  # off the event loop, bounded
    if doc is not None:
        problems += await _policies(request).store.unknown_references(doc)
    return web.json_response(
        {
            "html": html,
            "problems": [{"line": p.line, "message": p.message} for p in problems],
            "id": doc.id if doc else None,
        }
    )


# -- writes -----------------------------------------------------------------------------------


async def _write(request: web.Request, action: str, run: Any) -> web.Response:
    who = _auth(request).require(request, "editor")
    policy_id = _policy_id(request)
    body = await _body(request)
    services = _policies(request)
    store = services.store
    try:
        record = await run(store, who, policy_id, body)
    except VersionConflict as exc:
        raise _fail(web.HTTPConflict, str(exc), latest_version=exc.latest) from None
    except UnknownVersion as exc:
        raise _fail(web.HTTPNotFound, str(exc)) from None
    except PolicyError as exc:
        problems = [line for line in str(exc).split("; ") if line]
        raise _fail(web.HTTPUnprocessableEntity, "the policy is not valid", problems=problems) from None
    log.info("editor.saved", action=action, policy=record.label(), status=record.status, author=who.name)
    await services.sync.refresh()  # this instance is current at once; the others follow via pub/sub
    status = 201 if action == "save" else 200
    return web.json_response(_record_json(record, await store.published_version(policy_id)), status=status)


async def _do_save(store: PolicyStore, who: Principal, policy_id: str, body: dict[str, Any]) -> VersionRecord:
    content = body.get("content")
    if not isinstance(content, str):
        raise _fail(web.HTTPBadRequest, "content must be a string")
    # the same rules as `policies check`, off the event loop (the store re-parses only a valid text)
    doc, problems = await PARSE_POOL.run(check_text, content, f"{policy_id}.md")
    if doc is not None:
        problems += await store.unknown_references(doc)
    if doc is None or problems:
        raise PolicyError("; ".join(str(p) for p in problems))
    return await store.save(
        # saving never publishes (that is the explicit publish step), and the store numbers versions:
        # a number typed into the front matter does not make the history jump
        with_status(with_version(content, 1), "draft"),
        author=who.name,
        message=str(body.get("message") or "")[:500],
        base_version=_int(body.get("base_version"), "base_version"),
        policy_id=policy_id,
    )


async def _do_publish(
    gate: PublishGate, store: PolicyStore, who: Principal, policy_id: str, body: dict[str, Any]
) -> VersionRecord:
    version = _int(body.get("version"), "version") or 0  # never None without allow_none
    base = _int(body.get("base_version"), "base_version")
    latest = await store.latest_version(policy_id)
    if base is not None and base != latest:  # before the suite runs, not after
        raise VersionConflict(policy_id, base, latest)
    tests = await gate.check(policy_id, version)
    if tests.blocked:
        reason, label = body.get("override_reason"), f"{policy_id}@{version}"
        failing = [b.id for b in tests.newly_failing]
        if not isinstance(reason, str) or len(reason.strip()) < MIN_REASON_CHARS:
            log.warning("editor.publish_refused", policy=label, author=who.name, newly_failing=failing)
            raise _fail(
                web.HTTPUnprocessableEntity,
                f"{len(failing)} policy test case(s) would newly fail: publish anyway only with a reason "
                f"(at least {MIN_REASON_CHARS} characters)",
                gate=gate_json(tests),
            )
        tests.override_by, tests.override_reason = who.name, reason.strip()[:500]
        log.warning(
            "editor.publish_overridden", policy=label, author=who.name,
            newly_failing=failing, reason=tests.override_reason,
        )  # fmt: skip
    return await store.publish(policy_id, version, author=who.name, base_version=base, tests=tests)


async def _do_rollback(
    store: PolicyStore, who: Principal, policy_id: str, body: dict[str, Any]
) -> VersionRecord:
    version = _int(body.get("version"), "version")
    base = _int(body.get("base_version"), "base_version")
    return await store.rollback(policy_id, version, author=who.name, base_version=base)  # type: ignore[arg-type]


async def _save(request: web.Request) -> web.Response:
    return await _write(request, "save", _do_save)


async def _publish(request: web.Request) -> web.Response:
    async def run(store: PolicyStore, who: Principal, policy_id: str, body: dict[str, Any]) -> VersionRecord:
        return await _do_publish(gate_of(request), store, who, policy_id, body)

    return await _write(request, "publish", run)


async def _rollback(request: web.Request) -> web.Response:
    return await _write(request, "rollback", _do_rollback)


# -- try-it -----------------------------------------------------------------------------------


async def _try(request: web.Request) -> web.Response:
    """Ask the supervisor one question against the published set or the editors' draft set."""
    who = _auth(request).require(request)
    body = await _body(request)
    which = body.get("set", "published")
    if which == "draft":
        who = _auth(request).require(request, "editor")
    question = body.get("question")
    if which not in ("draft", "published") or not isinstance(question, str) or not question.strip():
        raise _fail(web.HTTPBadRequest, "send a question and set: draft or published")
    services = _policies(request)
    supervisor = services.supervisor  # the published set: exactly what callers get
    if which == "draft":
        supervisor = supervisor.with_policies(await services.library("latest"))
    decision = await supervisor.decide(f"tryit-{uuid.uuid4().hex[:12]}", question.strip()[:1000])
    log.info(
        "editor.try", set=which, author=who.name, policies=decision.policy_labels(), outcome=decision.outcome
    )
    return web.json_response(
        {
            "answer": decision.text,
            "outcome": decision.outcome,
            "set": which,
            "decision_id": decision.decision_id,
            "latency_ms": round(decision.latency_ms, 1),
            "sections": [
                {"id": p.id, "version": p.version, "label": p.label(), "section": p.section}
                for p in decision.policies
            ],
        }
    )
