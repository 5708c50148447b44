"""The publish gate and the test suites in the editor API, on the real service (the supervisor
against the simulator's text model, suites seeded from the policies directory)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from infra.settings import Settings
from tests.support.paths import POLICIES_DIR
from tests.support.service import RunningService

EDITOR, VIEWER = "editor-token-0123456789", "viewer-token-0123456789"
API = "/editor/api"
TRAIL_TESTED_60 = "can be returned within 60 days of purchase under the Trail Tested"
REASON = "Legal moved the Trail Tested window to 30 days on July 1"
TRAIL_TESTED_CASES = {
    "returns-tent-slept-in",
    "returns-sleeping-bag-used",
    "returns-backpack-trail",
    "returns-tent-after-two-trips",
    "returns-trail-tested-limit",
    "returns-trail-tested-exception",
}


async def call(method: str, url: str, token: str, json: Any = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url, headers={"Authorization": f"Bearer {token}"}, json=json) as r,
    ):
        return r.status, await r.json()


@pytest.fixture
async def service(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings], tmp_path: Path
) -> RunningService:
    """Two suites (returns, gift cards: 18 cases) over the sample policies and their data."""
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES_DIR, policies)
    for path in (policies / "tests").iterdir():
        if path.stem not in ("returns", "gift-cards"):
            path.unlink()
    settings = make_settings(
        editor_tokens={"ana": EDITOR}, viewer_tokens={"vic": VIEWER}, policies_dir=policies
    )
    return await start_service(settings)


async def draft(url: str, policy: str, old: str, new: str, base: int) -> int:
    content = (await call("GET", f"{url}/policies/{policy}", EDITOR))[1]["content"]
    assert old in content
    status, saved = await call(
        "PUT",
        f"{url}/policies/{policy}",
        EDITOR,
        {"content": content.replace(old, new), "base_version": base},
    )
    assert status == 201 and saved["status"] == "draft"
    return int(saved["version"])


async def test_a_regression_is_refused_until_an_editor_gives_a_reason(service: RunningService) -> None:
    url = service.url + API
    # an unrelated edit passes the gate; its results are kept with the version
    gift = await draft(url, "gift-cards", "work in stores, online and by phone", "work everywhere", 2)
    status, gate = await call("POST", f"{url}/policies/gift-cards/gate", EDITOR, {"version": gift})
    assert status == 200 and not gate["blocked"] and gate["newly_failing"] == []
    assert (gate["total"], gate["passed"], gate["unchanged"], gate["simulator"]) == (18, 18, 18, True)
    assert gate["suite"] == {"gift-cards.yaml": 1, "returns.yaml": 1}
    status, published = await call(
        "POST", f"{url}/policies/gift-cards/publish", EDITOR, {"version": gift, "base_version": gift}
    )
    assert status == 200 and published["status"] == "published" and published["tests"]["passed"] == 18
    assert published["tests"]["override_reason"] is None

    # the Trail Tested window from 60 to 30 days fails the returns cases that pin it
    returns = await draft(url, "returns", TRAIL_TESTED_60, TRAIL_TESTED_60.replace("60", "30"), 3)
    status, gate = await call("POST", f"{url}/policies/returns/gate", EDITOR, {"version": returns})
    assert status == 200 and gate["blocked"]
    assert {b["id"] for b in gate["newly_failing"]} == TRAIL_TESTED_CASES
    tent = next(b for b in gate["newly_failing"] if b["id"] == "returns-tent-slept-in")
    assert tent["failures"] == ["fact: does not state '60 days'"] and "within 30 days" in tent["answer"]
    assert (gate["passed"], gate["baseline_passed"], gate["unchanged"]) == (12, 18, 12)
    assert gate["summary"] == "tests 12/18 passed, 6 newly failing"

    body = {"version": returns, "base_version": returns}
    for reason in (None, "   ", "too short"):
        status, refused = await call(
            "POST", f"{url}/policies/returns/publish", EDITOR, {**body, "override_reason": reason}
        )
        assert status == 422 and refused["gate"]["blocked"], reason
        assert refused["error"].startswith("6 policy test case(s) would newly fail")
    live = (await call("GET", f"{url}/policies/returns", VIEWER))[1]
    assert live["version"] == 3 and "within 60 days" in live["content"]  # callers still get 60 days
    assert (await call("POST", f"{url}/policies/returns/gate", VIEWER, {"version": returns}))[0] == 403

    status, published = await call(
        "POST", f"{url}/policies/returns/publish", EDITOR, {**body, "override_reason": REASON}
    )
    assert status == 200 and published["version"] == returns + 1 and published["status"] == "published"
    assert (published["tests"]["override_by"], published["tests"]["override_reason"]) == ("ana", REASON)
    history = (await call("GET", f"{url}/policies/returns/history", VIEWER))[1]["versions"]
    assert history[0]["tests"]["override_reason"] == REASON and history[1]["tests"] is None
    assert {b["id"] for b in history[0]["tests"]["newly_failing"]} == TRAIL_TESTED_CASES
    # a stale base is refused before the suite runs
    status, _ = await call(
        "POST", f"{url}/policies/returns/publish", EDITOR, {"version": 3, "base_version": 3}
    )
    assert status == 409


async def test_suites_are_versioned_and_checked_with_their_lines(service: RunningService) -> None:
    url = service.url + API
    listing = (await call("GET", f"{url}/suites", VIEWER))[1]
    assert [(s["file"], s["version"], s["cases"]) for s in listing["suites"]] == [
        ("gift-cards.yaml", 1, 3),
        ("returns.yaml", 1, 15),
    ]
    record = (await call("GET", f"{url}/suites/returns", VIEWER))[1]
    assert record["content"] == (POLICIES_DIR / "tests" / "returns.yaml").read_text(encoding="utf-8")
    assert record["author"] == "seed" and record["label"] == "returns@1"

    broken = record["content"].replace("      facts: [60 days, Trail Tested]", "      facts: 60 days", 1)
    status, checked = await call("POST", f"{url}/suites/returns/check", VIEWER, {"content": broken})
    assert status == 200 and checked["problems"] == [
        {"line": 18, "message": "cases.1.expect.facts: Input should be a valid list"}
    ]
    status, refused = await call(
        "PUT", f"{url}/suites/returns", EDITOR, {"content": broken, "base_version": 1}
    )
    assert status == 422 and refused["problems"] == [
        "returns.yaml:18: cases.1.expect.facts: Input should be a valid list"
    ]
    duplicate = record["content"].replace("id: returns-backpack-trail", "id: gift-cards-expiry")
    status, refused = await call(
        "PUT", f"{url}/suites/returns", EDITOR, {"content": duplicate, "base_version": 1}
    )
    assert status == 422 and refused["problems"] == [
        "returns.yaml:28: duplicate case id 'gift-cards-expiry' (also in gift-cards.yaml:4)"
    ]

    edited = record["content"].replace("facts: [60 days, sleeping bags]", "facts: [sleeping bags]")
    denied, _ = await call("PUT", f"{url}/suites/returns", VIEWER, {"content": edited, "base_version": 1})
    assert denied == 403
    status, saved = await call(
        "PUT", f"{url}/suites/returns", EDITOR, {"content": edited, "base_version": 1, "message": "looser"}
    )
    assert status == 201 and (saved["version"], saved["author"], saved["cases"]) == (2, "ana", 15)
    status, conflict = await call(
        "PUT", f"{url}/suites/returns", EDITOR, {"content": edited, "base_version": 1}
    )
    assert status == 409 and conflict["latest_version"] == 2
    history = (await call("GET", f"{url}/suites/returns/history", VIEWER))[1]["versions"]
    assert [(v["version"], v["author"], v["message"]) for v in history] == [
        (2, "ana", "looser"),
        (1, "seed", "seeded from policies/tests/"),
    ]
    old = (await call("GET", f"{url}/suites/returns?version=1", VIEWER))[1]
    assert old["content"] == record["content"]
    assert (await call("GET", f"{url}/suites/Bad.Name", VIEWER))[0] == 400
    assert (await call("GET", f"{url}/suites/nothing-here", VIEWER))[0] == 404
