"""The policy editor API on the real service: auth, safety, the editing flow, try-it, two instances."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from infra.settings import Settings
from responder.web.editor_auth import TokenAuth
from responder.web.editor_routes import POLICIES
from tests.support.service import RunningService
from tests.support.waits import wait_until

EDITOR, VIEWER = "editor-token-0123456789", "viewer-token-0123456789"
API = "/editor/api"
QUESTION = "How many days do I have to return unused items with a receipt?"
# a longer returns window fails the suite's 30-day case (policies/tests/returns.yaml): the publish
# gate lets it through only with a reason (tests/responder/web/test_policy_gate.py)
OVERRIDE = {"override_reason": "the returns window changes on purpose in this test"}


def editor_settings(make_settings: Callable[..., Settings], **extra: Any) -> Settings:
    return make_settings(editor_tokens={"ana": EDITOR}, viewer_tokens={"vic": VIEWER}, **extra)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def call(
    method: str, url: str, token: str | None = None, json: Any = None, data: bytes | None = None
) -> tuple[int, Any]:
    headers = auth(token) if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url, headers=headers, json=json, data=data) as r,
    ):
        body = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, body


@pytest.fixture
async def service(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> RunningService:
    return await start_service(editor_settings(make_settings))


async def test_reads_and_writes_need_the_right_token(service: RunningService) -> None:
    url = service.url + API
    returns = (await call("GET", f"{url}/policies/returns", EDITOR))[1]
    edit = {"content": returns["content"], "base_version": 3}
    for method, path, body in [
        ("GET", "/policies", None),
        ("GET", "/policies/returns", None),
        ("GET", "/policies/returns/history", None),
        ("PUT", "/policies/returns", edit),
        ("POST", "/policies/returns/publish", {"version": 3, "base_version": 3}),
        ("POST", "/try", {"question": QUESTION, "set": "published"}),
        ("POST", "/preview", {"content": returns["content"]}),
        ("GET", "/policies/returns/diff?from=3&to=3", None),
    ]:
        assert (await call(method, url + path, None, body))[0] == 401, path
        assert (await call(method, url + path, "wrong-token", body))[0] == 401, path
    assert (await call("PUT", f"{url}/policies/returns", VIEWER, edit))[0] == 403
    assert (
        await call("POST", f"{url}/policies/returns/rollback", VIEWER, {"version": 3, "base_version": 3})
    )[0] == 403
    assert (await call("POST", f"{url}/try", VIEWER, {"question": QUESTION, "set": "draft"}))[0] == 403
    assert (await call("GET", f"{url}/me", VIEWER))[1] == {"name": "vic", "role": "viewer"}
    # a viewer never sees a draft: not in the list, not by id, not by version, not in history
    draft = returns["content"].replace("status: published", "status: draft").replace("30 days", "31 days")
    status, saved = await call(
        "PUT", f"{url}/policies/returns", EDITOR, {"content": draft, "base_version": 3}
    )
    assert status == 201 and saved["label"] == "returns@4" and saved["author"] == "ana"
    assert (await call("GET", f"{url}/policies/returns", VIEWER))[1]["version"] == 3
    assert (await call("GET", f"{url}/policies/returns?version=4", VIEWER))[0] == 403
    assert (await call("GET", f"{url}/policies/returns?version=4", EDITOR))[1]["status"] == "draft"
    history = (await call("GET", f"{url}/policies/returns/history", VIEWER))[1]["versions"]
    assert [v["version"] for v in history] == [3]
    listing = (await call("GET", f"{url}/policies", VIEWER))[1]["policies"]
    assert {p["id"]: p["version"] for p in listing}["returns"] == 3


async def test_bad_ids_bodies_and_methods_are_refused(service: RunningService) -> None:
    url = service.url + API
    assert (await call("GET", f"{url}/policies/Bad.Id", EDITOR))[0] == 400
    assert (await call("GET", f"{url}/policies/..%2F..%2Fetc", EDITOR))[0] in (400, 404)
    assert (await call("GET", f"{url}/policies/nope", EDITOR))[0] == 404
    big = {"content": "x" * (200 * 1024), "base_version": 3}
    assert (await call("PUT", f"{url}/policies/returns", EDITOR, big))[0] == 413
    assert (await call("PUT", f"{url}/policies/returns", EDITOR, data=b"{not json"))[0] in (400, 415)
    assert (await call("GET", f"{url}/policies/returns/publish", EDITOR))[0] == 405  # no state change on GET
    status, body = await call(
        "PUT", f"{url}/policies/returns", EDITOR, {"content": "# no front matter", "base_version": 3}
    )
    assert status == 422 and body["problems"] == [
        "returns.md:1: missing YAML front matter between '---' lines"
    ]
    returns = (await call("GET", f"{url}/policies/returns", EDITOR))[1]["content"]
    ghost = returns + "\nDamaged goods: see [[policy:ghost-policy]].\n"
    status, body = await call("PUT", f"{url}/policies/returns", EDITOR, {"content": ghost, "base_version": 3})
    line = ghost.splitlines().index("Damaged goods: see [[policy:ghost-policy]].") + 1
    assert status == 422
    assert body["problems"] == [f"returns.md:{line}: reference to unknown policy id 'ghost-policy'"]
    other = (await call("GET", f"{url}/policies/shipping", EDITOR))[1]["content"]
    assert (await call("PUT", f"{url}/policies/returns", EDITOR, {"content": other, "base_version": 3}))[
        0
    ] == 422
    assert (await call("GET", f"{url}/policies/returns", EDITOR))[1]["version"] == 3  # nothing was saved


async def test_concurrent_edits_get_409(service: RunningService) -> None:
    url = service.url + API
    content = (await call("GET", f"{url}/policies/shipping", EDITOR))[1]["content"]
    typed = content.replace("$14.95", "$13.95").replace("version: 2", "version: 99")  # the store numbers
    first = {"content": typed, "base_version": 2}
    second = {"content": content.replace("$14.95", "$15.95"), "base_version": 2}
    assert (await call("PUT", f"{url}/policies/shipping", EDITOR, first))[0] == 201
    status, body = await call("PUT", f"{url}/policies/shipping", EDITOR, second)
    assert status == 409 and body["latest_version"] == 3
    assert (
        await call("POST", f"{url}/policies/shipping/publish", EDITOR, {"version": 3, "base_version": 2})
    )[0] == 409
    latest = (await call("GET", f"{url}/policies/shipping", EDITOR))[1]
    assert "$13.95" in latest["content"] and latest["version"] == 3 and "version: 3\n" in latest["content"]


async def test_preview_escapes_html_and_reports_problems_with_lines(service: RunningService) -> None:
    url = service.url + API
    content = (await call("GET", f"{url}/policies/gift-cards", EDITOR))[1]["content"]
    edited = content.replace(
        "## Expiry and fees\n", "## Expiry and fees\n\n<script>alert(1)</script> **never**\n"
    )
    edited = edited.replace("version: 2", "version: zero") + "\nSee [[policy:no-such-policy]].\n"
    status, body = await call("POST", f"{url}/preview", VIEWER, {"content": edited})
    assert status == 200
    assert "<script>" not in body["html"] and "&lt;script&gt;" in body["html"]
    assert "<strong>never</strong>" in body["html"] and "<h2>Expiry and fees</h2>" in body["html"]
    assert {"line": 4, "message": "version: Input should be a valid integer"} in body["problems"]
    page = await call("GET", service.url + "/editor/")
    assert page[0] == 200 and "editor.js" in page[1] and EDITOR not in page[1]


async def test_edit_publish_history_diff_rollback_and_try_it(service: RunningService) -> None:
    url = service.url + API
    before = (await call("POST", f"{url}/try", VIEWER, {"question": QUESTION, "set": "published"}))[1]
    assert "30 days" in before["answer"] and "returns@3" in [s["label"] for s in before["sections"]]

    current = (await call("GET", f"{url}/policies/returns", EDITOR))[1]
    draft = current["content"].replace("within 30 days of purchase", "within 45 days of purchase")
    saved = (
        await call(
            "PUT",
            f"{url}/policies/returns",
            EDITOR,
            {"content": draft, "base_version": 3, "message": "longer"},
        )
    )[1]
    assert (saved["version"], saved["status"], saved["published_version"]) == (4, "draft", 3)

    on_draft = (await call("POST", f"{url}/try", EDITOR, {"question": QUESTION, "set": "draft"}))[1]
    on_live = (await call("POST", f"{url}/try", EDITOR, {"question": QUESTION, "set": "published"}))[1]
    assert "45 days" in on_draft["answer"] and "returns@4" in [s["label"] for s in on_draft["sections"]]
    assert "30 days" in on_live["answer"]  # callers still get the published text

    published = (
        await call(
            "POST", f"{url}/policies/returns/publish", EDITOR, {"version": 4, "base_version": 4, **OVERRIDE}
        )
    )[1]
    assert (published["version"], published["status"], published["published_version"]) == (5, "published", 5)
    after = (await call("POST", f"{url}/try", VIEWER, {"question": QUESTION, "set": "published"}))[1]
    assert "45 days" in after["answer"] and "returns@5" in [s["label"] for s in after["sections"]]

    history = (await call("GET", f"{url}/policies/returns/history", EDITOR))[1]["versions"]
    assert [(v["version"], v["status"], v["author"]) for v in history] == [
        (5, "published", "ana"),
        (4, "draft", "ana"),
        (3, "published", "seed"),
    ]
    diff = (await call("GET", f"{url}/policies/returns/diff?from=3&to=5", VIEWER))[1]["diff"]
    assert "-returned within 30 days of purchase" in diff.replace("can be ", "") or "-Unused items" in diff
    assert "+Unused items in their original condition can be returned within 45 days of purchase" in diff

    back = (
        await call("POST", f"{url}/policies/returns/rollback", EDITOR, {"version": 3, "base_version": 5})
    )[1]
    assert (back["version"], back["status"]) == (6, "published") and "within 30 days" in back["content"]
    again = (await call("POST", f"{url}/try", VIEWER, {"question": QUESTION, "set": "published"}))[1]
    assert "30 days" in again["answer"] and "returns@6" in [s["label"] for s in again["sections"]]
    # the trace can still show the exact text the supervisor saw at returns@5
    old = (await call("GET", f"{url}/policies/returns?version=5", VIEWER))[1]
    assert "within 45 days" in old["content"]
    # and the version the first answer cited is still the exact seeded text
    cited = before["sections"][0]
    first = (await call("GET", f"{url}/policies/{cited['id']}?version={cited['version']}", VIEWER))[1]
    seeded = service.services.settings.policies_dir / "returns.md"
    assert cited["label"] == "returns@3" and first["content"] == seeded.read_text(encoding="utf-8")


async def test_a_publish_on_one_instance_is_used_by_the_other_within_a_second(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    a = await start_service(editor_settings(make_settings))
    b = await start_service(editor_settings(make_settings))
    content = (await call("GET", f"{a.url}{API}/policies/returns", EDITOR))[1]["content"]
    edited = content.replace("within 30 days of purchase", "within 40 days of purchase")
    status, saved = await call(
        "PUT", f"{a.url}{API}/policies/returns", EDITOR, {"content": edited, "base_version": 3}
    )
    assert status == 201 and saved["status"] == "draft"
    status, _ = await call(
        "POST", f"{a.url}{API}/policies/returns/publish", EDITOR, {"version": 4, "base_version": 4} | OVERRIDE
    )
    assert status == 200
    library = b.server.app[POLICIES].sync.library
    await wait_until(
        lambda: library.get("returns").version == 5,  # type: ignore[union-attr]
        1.0, what="instance B refreshed within 1 s",
    )  # fmt: skip
    decision = await b.services.decide("call-on-b", QUESTION)
    assert "40 days" in decision.text and decision.policy_labels()[0] == "returns@5"



async def test_tokens_never_reach_a_log_line(
    service: RunningService, caplog: pytest.LogCaptureFixture
) -> None:
    url = service.url + API
    stray = "stray-secret-token-987654"
    caplog.set_level(logging.DEBUG)
    with capture_logs() as events:
        content = (await call("GET", f"{url}/policies/gift-cards", EDITOR))[1]["content"]
        edit = {"content": content, "base_version": 2, "message": "m"}
        assert (await call("PUT", f"{url}/policies/gift-cards", EDITOR, edit))[0] == 201
        assert (await call("GET", f"{url}/policies", stray))[0] == 401
        asked = await call("POST", f"{url}/try", VIEWER, {"question": QUESTION, "set": "published"})
        assert asked[0] == 200
    assert {"editor.saved", "editor.try"} <= {e["event"] for e in events}  # the log was captured
    logged = repr(events) + caplog.text
    for secret in (EDITOR, VIEWER, stray):
        assert secret not in logged


async def test_search_and_new_policies_respect_roles(service: RunningService) -> None:
    url = service.url + API
    gift = (await call("GET", f"{url}/policies?q=does+my+gift+card+expire", VIEWER))[1]["policies"]
    assert gift[0]["id"] == "gift-cards"
    new = (await call("GET", f"{url}/policies/gift-cards", EDITOR))[1]["content"]
    new = new.replace("id: gift-cards", "id: kayak-rentals").replace("version: 2", "version: 1")
    new = new.replace("# Gift Cards", "# Kayak rentals\n\n## Rental period\n\nKayaks rent by the day.\n\n")
    body = {"content": new, "base_version": 0}
    status, saved = await call("PUT", f"{url}/policies/kayak-rentals", EDITOR, body)
    assert status == 201 and (saved["label"], saved["status"], saved["published_version"]) == (
        "kayak-rentals@1", "draft", 0
    )
    found = (await call("GET", f"{url}/policies?q=kayak+rental+period", EDITOR))[1]["policies"]
    assert found[0]["id"] == "kayak-rentals"  # editors search drafts too
    seen = (await call("GET", f"{url}/policies?q=kayak+rental+period", VIEWER))[1]["policies"]
    assert "kayak-rentals" not in [p["id"] for p in seen]
    listing = (await call("GET", f"{url}/policies", VIEWER))[1]["policies"]
    assert "kayak-rentals" not in [p["id"] for p in listing]
    for path in ("", "/history", "?version=1"):
        assert (await call("GET", f"{url}/policies/kayak-rentals{path}", VIEWER))[0] in (403, 404), path


def test_short_tokens_are_named_at_startup_without_their_value() -> None:
    editors = {"ana": SecretStr("short-1"), "bo": SecretStr("a-long-enough-editor-token")}
    viewers = {"vic": SecretStr("tiny"), "nobody": SecretStr("")}
    with capture_logs() as events:
        TokenAuth(editors, viewers).audit(editors, viewers)
    weak = next(e for e in events if e["event"] == "editor.weak_tokens")
    assert weak["people"] == ["ana", "vic"]
    assert "short-1" not in repr(events) and "tiny" not in repr(events)
    with capture_logs() as events:
        TokenAuth({}, {}).audit({}, {})
    assert [e["event"] for e in events] == ["editor.locked"]
