"""Shared by the browser tests: the service fixtures of tests/responder, and headless Chromium.

Chromium and ChromeDriver come from Debian (`chromium`, `chromium-driver`; `.ci/run`
installs them). The machine has no internet, so background networking is switched off.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.service import make_settings, start_service

__all__ = ["make_settings", "start_service"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

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
    """Run the blocking ``fn`` in a thread (the service shares this loop) until it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(fn)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(what)
        await asyncio.sleep(0.1)


def screenshot(driver: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    return path
