"""Real headless Chromium for the console's browser tests: Debian's `chromium` driven by
Playwright (no browser download). A missing browser fails the test with how to install it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.console.support import NAMES, TOKENS

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The committed screenshots are remade only when asked (SAW_SCREENSHOTS=docs), so a test run
# leaves the work tree clean; otherwise they go to a temporary folder (still taken: a page that
# fails to render fails the test).
SCREENSHOTS = (
    Path(__file__).resolve().parents[2] / "docs" / "console"
    if os.environ.get("SAW_SCREENSHOTS") == "docs"
    else Path(tempfile.gettempdir()) / "saw-console-screenshots"
)
VIEWPORT = {"width": 1280, "height": 860}


def chromium_path() -> str:
    """Debian's chromium, or a failure (never a skip) saying how to get it."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    found = shutil.which("chromium")
    if found:
        return found
    pytest.fail(
        f"no Chromium at {CHROMIUM}: the console's browser tests need it. Install Debian's "
        "package: `apt-get update && apt-get install -y chromium` (`.ci/run` does this on CI); "
        "`playwright install` cannot download browsers here."
    )


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def log_in(browser: Browser, base_url: str, role: str, color_scheme: str = "light") -> Page:
    """A new browser context logged in through the login form as the user of `role`."""
    context = browser.new_context(
        base_url=base_url,
        viewport=VIEWPORT,
        color_scheme=color_scheme,  # type: ignore[arg-type]
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto("/dead-letters")
    assert "/login" in page.url  # sent to log in first
    page.fill("#user", NAMES[role])
    page.fill("#token", TOKENS[role])
    page.click("button[type=submit]")
    page.wait_for_url("**/dead-letters")
    return page


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)
