"""The trace viewer in a real headless Chromium: sign in, follow a live call, read its decision.

A simulated phone call (the Twilio-protocol caller → the real service → the simulator) runs
while the browser watches its page: the page must show the call as live, grow as the call
proceeds, and settle when it ends. Then the decision is opened: tool calls, the policy
version it cites (a link to that version's exact text) and the final text, all as Redis
holds them. Screenshot: test-artifacts/trace_viewer.png.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.settings import Settings
from simulator.caller import place_call
from simulator.scenario import load_scenario
from tests.support.browser import launch_chromium, poll, requires_chromium, screenshot
from tests.support.service import AUTH_TOKEN
from tests.support.waits import wait_until

ADMIN = "browser-admin-token-5678"

pytestmark = requires_chromium


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    driver = launch_chromium(tmp_path / "profile", "--window-size=1200,1300")
    try:
        yield driver
    finally:
        driver.quit()


async def test_trace_viewer_follows_a_live_call_and_shows_its_decision(
    start_service: Callable[..., Any], make_settings: Callable[..., Settings], browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    svc = await start_service(make_settings(simulator_scenario="returns", admin_token=ADMIN))
    history = svc.services.history
    scenario = load_scenario("returns").model_copy(update={"quiet_ms": 1500})

    # signing in: the list page answers with the form, the form brings us back to the list
    await asyncio.to_thread(browser.get, svc.url + "/traces")
    await asyncio.to_thread(lambda: browser.find_element(By.ID, "token").send_keys(ADMIN))
    await asyncio.to_thread(lambda: browser.find_element(By.CSS_SELECTOR, "#login button").click())
    await poll(lambda: browser.find_elements(By.ID, "calls"), "the call list", 10)

    call = asyncio.create_task(place_call(svc.url, scenario, auth_token=AUTH_TOKEN, speed=4.0))
    # a fresh key prefix: the only call is ours
    [call_id] = await wait_until(lambda: history.recent_calls(1), 15, 0.05, what="the call recorded")

    # the call page while the call is live: badge on, timeline growing
    await asyncio.to_thread(browser.get, f"{svc.url}/traces/{call_id}")
    await poll(lambda: browser.find_element(By.ID, "live").is_displayed(), "the live badge", 10)

    def entries() -> int:
        return len(browser.find_elements(By.CSS_SELECTOR, "#timeline > li"))

    first = await poll(entries, "the first entries", 10)
    await call
    await poll(lambda: not browser.find_element(By.ID, "live").is_displayed(), "the call to end", 15)
    assert entries() > first  # the page followed the call without a reload

    # the finished call as Redis holds it
    [decision] = await history.get_decisions(call_id)
    items = await history.get_items(call_id)
    texts = await asyncio.to_thread(
        lambda: [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#timeline > li")]
    )
    assert any(scenario.turns[1].say in t for t in texts)
    kinds = await asyncio.to_thread(
        lambda: [
            e.get_attribute("data-kind") for e in browser.find_elements(By.CSS_SELECTOR, "#timeline > li")
        ]
    )
    assert "filler" in kinds and "decision" in kinds and "tool_call" in kinds
    last_said = [i.text for i in items if i.kind == "message" and i.role == "assistant"][-1]
    assert any(last_said and last_said in t for t in texts)

    # open the decision: tools, policy version link, final text
    details = await asyncio.to_thread(browser.find_element, By.CSS_SELECTOR, "details[data-decision]")
    assert details.get_attribute("data-decision") == decision.decision_id
    await asyncio.to_thread(lambda: details.find_element(By.TAG_NAME, "summary").click())
    body = await asyncio.to_thread(lambda: details.find_element(By.CLASS_NAME, "body").text)
    assert "lookupPolicyDocument" in body and decision.text in body
    link = await asyncio.to_thread(
        lambda: details.find_element(By.LINK_TEXT, "returns@3").get_attribute("href")
    )
    assert link.endswith("/policies/returns/versions/3")
    await asyncio.to_thread(screenshot, browser, "trace_viewer.png")

    # the link opens the exact text of that version (the browser carries the login cookie)
    await asyncio.to_thread(browser.get, link)
    policy_text = await asyncio.to_thread(lambda: browser.find_element(By.TAG_NAME, "body").text)
    assert "id: returns" in policy_text and "version: 3" in policy_text

    # back on the list: the call is there, and the outcome filter leaves it out when asked to
    await asyncio.to_thread(browser.get, svc.url + "/traces")
    await poll(lambda: browser.find_elements(By.CSS_SELECTOR, f'tr[data-call="{call_id}"]'), "the row", 10)
    row = await asyncio.to_thread(
        lambda: browser.find_element(By.CSS_SELECTOR, f'tr[data-call="{call_id}"]').text
    )
    assert "returns@3" in row and "ok" in row
    await asyncio.to_thread(
        lambda: browser.find_element(By.CSS_SELECTOR, "#outcome option[value='error']").click()
    )
    await asyncio.to_thread(lambda: browser.find_element(By.CSS_SELECTOR, "#filters button").click())
    await poll(
        lambda: not browser.find_elements(By.CSS_SELECTOR, f'tr[data-call="{call_id}"]'), "the filter", 10
    )
