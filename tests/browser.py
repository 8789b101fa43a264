"""A real headless Chromium for the tests of pages, driven by Selenium.

Debian's ``chromium`` and ``chromium-driver`` packages give the browser and its
driver (``.ci/run`` installs them). Without them the page tests are skipped
with the command that installs them, unless ``FLASK2FASTAPI_REQUIRE_BROWSER``
is set, as CI sets it, where their absence fails the run instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"
"""Where page tests keep their screenshots (ignored by git; CI may upload it)."""

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)


def _binaries() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@contextmanager
def chromium() -> Iterator[WebDriver]:
    """A headless Chromium, closed after the block; skips the test without one."""
    binaries = _binaries()
    if binaries is None:
        message = "no chromium: apt-get install chromium chromium-driver"
        if os.environ.get("FLASK2FASTAPI_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)

    options = webdriver.ChromeOptions()
    options.binary_location = binaries[0]
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    # The driver given: Selenium would otherwise try to download one.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=binaries[1]))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
