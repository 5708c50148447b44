"""The publish gate in a real headless Chromium: the Trail Tested regression is refused in the editor.

An editor drafts the camping-gear (Trail Tested) return window at 30 days instead of 60 and
presses Publish: the page runs the policy tests on the set that publish would make live,
shows the newly failing returns cases with the answers callers would get, and does not
publish. Only with a written reason does "Publish anyway" go through; the reason is kept with
the version and shown from its history. An unrelated edit before it publishes straight away,
and a suite file edited in the page shows its problems with file:line. The service runs two
suites (returns, gift cards) over the sample policies; screenshot: test-artifacts/policy_gate.png.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.settings import Settings
from responder.web.editor_routes import POLICIES
from tests.support.browser import launch_chromium, poll, requires_chromium, screenshot
from tests.support.paths import POLICIES_DIR
from tests.support.service import RunningService

EDITOR_TOKEN = "browser-gate-token-4242"
TRAIL_TESTED_60 = "can be returned within 60 days of purchase under the Trail Tested"
REASON = "Legal moved the Trail Tested window to 30 days on July 1"

pytestmark = requires_chromium


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    driver = launch_chromium(tmp_path / "profile", "--window-size=1500,1400")
    try:
        yield driver
    finally:
        driver.quit()


async def test_the_trail_tested_regression_is_refused_until_a_reason_is_given(
    browser: Any, start_service: Callable[..., Any], make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    policies = tmp_path / "policies"
    shutil.copytree(POLICIES_DIR, policies)
    for path in (policies / "tests").iterdir():
        if path.stem not in ("returns", "gift-cards"):
            path.unlink()
    svc: RunningService = await start_service(
        make_settings(editor_tokens={"ana": EDITOR_TOKEN}, policies_dir=policies)
    )
    find = lambda css: browser.find_element(By.CSS_SELECTOR, css)  # noqa: E731
    text = lambda css: find(css).text  # noqa: E731

    def run(action: Callable[[], Any]) -> Any:
        return asyncio.to_thread(action)

    async def open_and_edit(policy: str, old: str, new: str) -> None:
        await run(lambda: find(f"button.policy-link[data-id='{policy}']").click())
        await poll(lambda: f"{policy}@" in text("#doc-title"), f"{policy} did not open")
        content = await run(lambda: find("#content").get_attribute("value"))
        assert old in content
        await run(
            lambda: browser.execute_script(
                "const t = document.getElementById('content'); t.value = arguments[0];"
                "t.dispatchEvent(new Event('input'));",
                content.replace(old, new),
            )
        )
        await poll(lambda: new in text("#preview"), "the preview did not follow the edit")

    await run(lambda: browser.get(svc.url + "/editor/"))
    await run(lambda: find("#token").send_keys(EDITOR_TOKEN))
    await run(lambda: find("#login-button").click())
    await poll(
        lambda: browser.find_elements(By.CSS_SELECTOR, "button.policy-link[data-id='returns']"), "list"
    )
    await poll(lambda: "returns.yaml" in text("#suite-list") and "15 cases" in text("#suite-list"), "suites")

    # an unrelated edit: the tests run, nothing newly fails, it is published at once
    await open_and_edit("gift-cards", "work in stores, online and by phone", "work everywhere")
    await run(lambda: find("#publish").click())
    await poll(lambda: "Published gift-cards@4." in text("#status"), "the unrelated edit was not published")
    assert "18/18 cases pass with this change" in text("#gate-summary")
    assert not await run(lambda: find("#override-form").is_displayed())

    # the regression: saved as a draft and refused at publish, with the failing answers shown
    await open_and_edit("returns", TRAIL_TESTED_60, TRAIL_TESTED_60.replace("60", "30"))
    await run(lambda: find("#publish").click())
    await poll(
        lambda: "Not published: 6 policy test case(s)" in text("#status"), "the publish was not refused"
    )
    summary = text("#gate-summary")
    assert "12/18 cases pass with this change (18/18 on the live set): 6 newly failing" in summary
    failing = text("#gate-failing")
    for case in ("returns-tent-slept-in", "returns-sleeping-bag-used", "returns-trail-tested-limit"):
        assert case in failing
    assert (
        "fact: does not state '60 days'" in failing
        and "within 30 days of purchase under the Trail" in failing
    )
    assert await run(lambda: find("#override-form").is_displayed())
    assert not await run(lambda: find("#publish-anyway").is_enabled())  # no reason yet
    store = svc.server.app[POLICIES].store
    assert (await store.get("returns", "published")).version == 3  # callers still hear 60 days
    await run(lambda: screenshot(browser, "policy_gate.png"))

    # publishing anyway takes a written reason, kept with the version and shown in its history
    await run(lambda: find("#override-reason").send_keys(REASON))
    await run(lambda: find("#publish-anyway").click())
    await poll(lambda: "Published returns@5 despite failing policy tests." in text("#status"), "no override")
    live = await store.get("returns", "published")
    assert live.version == 5 and "within 30 days of purchase under the Trail Tested" in live.content
    assert live.tests is not None and (live.tests.override_by, live.tests.override_reason) == ("ana", REASON)
    await poll(lambda: "tests 12/18, 6 newly failing, published anyway" in text("#history"), "history")
    await run(lambda: browser.execute_script("document.getElementById('gate').hidden = true"))
    await run(lambda: find("#history button.tests").click())
    await poll(lambda: f"Published anyway by ana: “{REASON}”" in text("#gate-summary"), "stored result")

    # a suite file opens in the same pane; a malformed edit shows file:line
    await run(lambda: find("button.suite-link[data-name='returns']").click())
    await poll(
        lambda: "tests/returns.yaml@1" in text("#doc-title") and "15 cases" in text("#preview"), "suite"
    )
    suite = await run(lambda: find("#content").get_attribute("value"))
    await run(
        lambda: browser.execute_script(
            "const t = document.getElementById('content'); t.value = arguments[0];"
            "t.dispatchEvent(new Event('input'));",
            suite.replace("      facts: [60 days, Trail Tested]", "      facts: 60 days", 1),
        )
    )
    await poll(lambda: "tests/returns.yaml:18: cases.1.expect.facts" in text("#problems"), "no file:line")
    assert not await run(lambda: find("#save").is_enabled()) and not await run(
        lambda: find("#publish").is_displayed()
    )
