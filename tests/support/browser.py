"""Headless Chromium for the browser tests (tests/browser), driven with selenium.

Chromium and ChromeDriver come from Debian (`chromium`, `chromium-driver`; `.ci/run`
installs them). The machine has no internet, so background networking is switched off.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import ARTIFACTS
from tests.support.waits import wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

requires_chromium = pytest.mark.skipif(
    not CHROMIUM.exists() or not CHROMEDRIVER.exists(),
    reason="needs /usr/bin/chromium and /usr/bin/chromedriver (Debian: chromium chromium-driver)",
)

BASE_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def launch_chromium(profile_dir: Path, *flags: str) -> Any:
    """A selenium-driven headless Chromium with a fresh profile; ``flags`` are added."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*BASE_FLAGS, f"--user-data-dir={profile_dir}", *flags):
        options.add_argument(flag)
    log_file = profile_dir.with_name(profile_dir.name + "-chromedriver.log")
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(log_file))
    return webdriver.Chrome(options=options, service=service)


async def poll(fn: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    """:func:`~tests.support.waits.wait_until` for a blocking selenium ``fn``: it runs in a thread
    (the service shares this loop) until it is truthy; ``what`` says what did not happen."""
    return await wait_until(fn, timeout, 0.1, what=what, in_thread=True)


def screenshot(driver: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    return path
