"""The policy editor's test suites and publish gate, under ``/editor/api/``.

Suites (``policies/tests/*.yaml``) are versioned in the store beside the policies
(:mod:`supervisor.policy_tests.store`); editors edit and save them here, anyone signed in
reads them. ``POST /policies/{id}/gate`` runs the suite on the set publishing that version
would make live and on the live set, and answers the difference (newly failing with their
answers, newly passing, unchanged); the publish itself (:mod:`responder.web.editor_routes`)
applies the same gate and refuses new failures without a written reason.

Suite texts are checked in the editor's bounded parse pool, off the event loop.
"""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from responder.web.editor_parse import PARSE_POOL
from responder.web.editor_routes import (
    API,
    _auth,
    _body,
    _fail,
    _int,
    _policies,
    _policy_id,
    gate_json,
    gate_of,
)
from supervisor.policy_format import ID_RE
from supervisor.policy_store import UnknownVersion, VersionConflict
from supervisor.policy_tests.store import SuiteRecord, SuiteRefused, SuiteStore

log = structlog.get_logger("editor")


def add_suite_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{API}/suites", _list)
    r.add_get(API + "/suites/{name}", _get)
    r.add_put(API + "/suites/{name}", _save)
    r.add_get(API + "/suites/{name}/history", _history)
    r.add_post(API + "/suites/{name}/check", _check)
    r.add_post(API + "/policies/{id}/gate", _gate)


def _suites(request: web.Request) -> SuiteStore:
    store = _policies(request).store
    return SuiteStore(store.redis, store.prefix)


def _name(request: web.Request) -> str:
    name = request.match_info["name"].removesuffix(".yaml")
    if not ID_RE.fullmatch(name):
        raise _fail(web.HTTPBadRequest, "invalid suite name")
    return name


def _record_json(record: SuiteRecord) -> dict[str, Any]:
    return {**record.model_dump(), "file": record.file, "label": record.label()}


async def _list(request: web.Request) -> web.Response:
    _auth(request).require(request)
    records = await _suites(request).records()
    items = [{**r.info().model_dump(), "file": r.file, "label": r.label()} for r in records]
    return web.json_response({"suites": items, "cases": sum(r.cases for r in records)})


async def _get(request: web.Request) -> web.Response:
    _auth(request).require(request)
    version = _int(request.query.get("version"), "version", allow_none=True)
    try:
        record = await _suites(request).get(_name(request), version)
    except KeyError as exc:
        raise _fail(web.HTTPNotFound, str(exc.args[0])) from None
    return web.json_response(_record_json(record))


async def _history(request: web.Request) -> web.Response:
    _auth(request).require(request)
    name = _name(request)
    infos = await _suites(request).history(name)
    if not infos:
        raise _fail(web.HTTPNotFound, f"no suite {name!r}")
    return web.json_response({"name": name, "versions": [i.model_dump() for i in infos]})


def _content(body: dict[str, Any]) -> str:
    content = body.get("content")
    if not isinstance(content, str):
        raise _fail(web.HTTPBadRequest, "content must be a string")
    return content


async def _check(request: web.Request) -> web.Response:
    """The problems (file:line) and the cases of an unsaved suite text; no state change."""
    _auth(request).require(request)
    name = _name(request)
    content = _content(await _body(request))
    file = f"{name}.yaml"
    cases, problems = await _suites(request).check({file: content}, parse=PARSE_POOL.run)
    mine = [c for c in cases if c.file == file]
    return web.json_response(
        {
            "problems": [{"line": p.line, "message": p.message} for p in problems],
            "cases": [
                {"id": c.id, "line": c.line, "question": c.case.question, "outcome": c.case.expect.outcome}
                for c in mine
            ],
        }
    )


async def _save(request: web.Request) -> web.Response:
    who = _auth(request).require(request, "editor")
    name = _name(request)
    body = await _body(request)
    content = _content(body)
    try:
        record = await _suites(request).save(
            f"{name}.yaml",
            content,
            author=who.name,
            message=str(body.get("message") or "")[:500],
            base_version=_int(body.get("base_version"), "base_version"),
            parse=PARSE_POOL.run,
        )
    except VersionConflict as exc:
        raise _fail(web.HTTPConflict, str(exc), latest_version=exc.latest) from None
    except SuiteRefused as exc:
        problems = [str(p) for p in exc.problems]
        raise _fail(web.HTTPUnprocessableEntity, "the suite is not valid", problems=problems) from None
    log.info("editor.suite_saved", suite=record.label(), cases=record.cases, author=who.name)
    return web.json_response(_record_json(record), status=201)


async def _gate(request: web.Request) -> web.Response:
    """What publishing ``{version}`` of a policy would do to the policy tests (no state change)."""
    who = _auth(request).require(request, "editor")
    policy_id = _policy_id(request)
    version = _int((await _body(request)).get("version"), "version")
    try:
        record = await gate_of(request).check(policy_id, version)  # type: ignore[arg-type]
    except UnknownVersion as exc:
        raise _fail(web.HTTPNotFound, str(exc)) from None
    log.info(
        "editor.gate_checked", policy=f"{policy_id}@{version}", author=who.name, passed=record.passed,
        total=record.total, newly_failing=[b.id for b in record.newly_failing],
    )  # fmt: skip
    return web.json_response(gate_json(record))
