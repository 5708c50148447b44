"""The policy editor in a real headless Chromium: sign in, edit, preview, publish, try-it, rollback.

The page talks to the real service (Redis-backed versioned store, the supervisor against the
simulator's text model). An editor changes the returns window from 30 to 45 days: the
preview shows the new text as it is typed, validation problems appear inline, the saved
draft answers 45 days in try-it on the draft set while the published set still says 30,
publishing (past the policy tests' 30-day case, with a reason) creates a new live version, and
the try-it panel's answer on the published set changes
from 30 to 45 days and names the version it used; the history compares any two versions,
and a rollback (confirmed in the page's dialog) brings the 30-day answer back. Driven with
selenium + the Debian chromedriver; a screenshot goes to test-artifacts/policy_editor.png.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.settings import Settings
from responder.web.editor_routes import POLICIES
from tests.support.browser import launch_chromium, poll, requires_chromium, screenshot
from tests.support.service import RunningService

EDITOR_TOKEN = "browser-editor-token-42"
QUESTION = "How many days do I have to return unused items with a receipt?"

pytestmark = requires_chromium


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    driver = launch_chromium(tmp_path / "profile", "--window-size=1500,1250")
    try:
        yield driver
    finally:
        driver.quit()


async def test_edit_preview_publish_and_try_it_in_chromium(
    browser: Any, start_service: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    svc: RunningService = await start_service(make_settings(editor_tokens={"ana": EDITOR_TOKEN}))
    find = lambda css: browser.find_element(By.CSS_SELECTOR, css)  # noqa: E731
    text = lambda css: find(css).text  # noqa: E731

    def run(action: Callable[[], Any]) -> Any:
        return asyncio.to_thread(action)

    await run(lambda: browser.get(svc.url + "/editor/"))
    await run(lambda: find("#token").send_keys(EDITOR_TOKEN))
    await run(lambda: find("#login-button").click())
    await poll(lambda: "ana (editor)" in text("#who"), "sign-in did not show the editor")

    async def ask() -> str:
        await run(lambda: browser.execute_script("document.getElementById('try-answer').textContent = ''"))
        await run(lambda: find("#try-ask").click())
        return await poll(lambda: (t := text("#try-answer")) not in ("", "Asking…") and t, "no try-it answer")

    await run(lambda: find("#try-question").send_keys(QUESTION))
    await run(lambda: Select(find("#try-set")).select_by_value("published"))
    before = await ask()
    assert "30 days" in before and "returns@3" in text("#try-sections")

    await poll(
        lambda: browser.find_elements(By.CSS_SELECTOR, "button.policy-link[data-id='returns']"), "no list"
    )
    await run(lambda: find("button.policy-link[data-id='returns']").click())
    await poll(lambda: "returns@3" in text("#doc-title"), "returns did not open")
    await poll(lambda: "within 30 days of purchase" in text("#preview"), "no preview")

    # a broken edit shows its problem inline, with the line; fixing it clears the list
    content = await run(lambda: find("#content").get_attribute("value"))
    broken = content.replace("version: 3", "version: three")
    await run(
        lambda: browser.execute_script(
            "const t = document.getElementById('content'); t.value = arguments[0];"
            "t.dispatchEvent(new Event('input'));",
            broken,
        )
    )
    await poll(lambda: "line 4: version" in text("#problems"), "validation problem not shown")
    assert not await run(lambda: find("#save").is_enabled())

    edited = content.replace("within 30 days of purchase", "within 45 days of purchase")
    await run(
        lambda: browser.execute_script(
            "const t = document.getElementById('content'); t.value = arguments[0];"
            "t.dispatchEvent(new Event('input'));",
            edited,
        )
    )
    await poll(lambda: "within 45 days of purchase" in text("#preview"), "preview did not follow the edit")
    assert text("#problems") == ""
    await run(lambda: find("#message").send_keys("45-day returns"))
    await run(lambda: find("#save").click())
    await poll(lambda: "Saved returns@4 (draft)" in text("#status"), "save did not finish")

    # try-it on the draft set answers from the draft; the published set (callers) is unchanged
    await run(lambda: Select(find("#try-set")).select_by_value("draft"))
    on_draft = await ask()
    assert "45 days" in on_draft and "returns@4" in text("#try-sections")
    await run(lambda: Select(find("#try-set")).select_by_value("published"))
    assert "30 days" in await ask() and "returns@3" in text("#try-sections")

    # a longer window fails the suite's 30-day case: the gate stops the publish until a reason is given
    await run(lambda: find("#publish").click())
    await poll(lambda: "Not published" in text("#status"), "the policy tests did not stop the publish")
    assert "returns-unused-window" in text("#gate-failing")
    await run(lambda: find("#override-reason").send_keys("45-day returns from the 1st of next month"))
    await run(lambda: find("#publish-anyway").click())
    await poll(lambda: "Published returns@5" in text("#status"), "publish did not finish")
    assert "returns@5" in text("#doc-title")
    await poll(lambda: "v5 published" in text("#history") and "v4 draft" in text("#history"), "history")

    # any two versions can be compared: the seeded v3 against the published v5
    await run(lambda: Select(find("#diff-from")).select_by_value("3"))
    await run(lambda: Select(find("#diff-to")).select_by_value("5"))
    await run(lambda: find("#diff-compare").click())
    diff = await poll(lambda: (t := text("#diff")).startswith("--- returns@3") and t, "no v3→v5 diff")
    assert "+++ returns@5" in diff and "-version: 3" in diff and "+version: 5" in diff
    assert "-Unused items in their original condition can be returned within 30 days of purchase" in diff
    assert "+Unused items in their original condition can be returned within 45 days of purchase" in diff

    after = await ask()
    assert "45 days" in after and "30 days" not in after
    assert "returns@5" in text("#try-sections")

    await run(lambda: screenshot(browser, "policy_editor.png"))

    # what the browser did is what the store holds
    store = svc.server.app[POLICIES].store
    live = await store.get("returns", "published")
    assert live.version == 5 and "within 45 days" in live.content and live.author == "ana"
    assert [i.message for i in await store.history("returns")][:2] == ["publish version 4", "45-day returns"]

    # roll back to the seeded v3 (the page asks first): callers get 30 days again, as returns@6
    await run(lambda: browser.find_elements(By.CSS_SELECTOR, "#history button.rollback")[-1].click())
    await run(lambda: browser.switch_to.alert.accept())
    await poll(lambda: "Rolled back: returns@6" in text("#status"), "rollback did not finish")
    back = await ask()
    assert "30 days" in back and "45 days" not in back and "returns@6" in text("#try-sections")
    live = await store.get("returns", "published")
    assert (live.version, live.message) == (6, "rollback to version 3") and "within 30 days" in live.content
