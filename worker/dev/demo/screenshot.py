"""Screenshot the console for the README: log in with a token, open a page, save a PNG.

    python -m worker.dev.demo.screenshot http://127.0.0.1:8090 <token> docs/demo-console.png [/path]

Headless Chromium through Playwright (a dev dependency), the system's `chromium` binary.
"""

from __future__ import annotations

import sys

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


def screenshot(url: str, token: str, out: str, path: str = "/") -> None:
    """Log in to the console at `url` with `token`, open `path`, save the page to `out`."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.goto(f"{url}/login?next={path}")
            page.fill("#token", token)
            page.click("button[type=submit]")
            page.wait_for_load_state("networkidle")
            page.screenshot(path=out, full_page=False)
        finally:
            browser.close()


if __name__ == "__main__":
    screenshot(*sys.argv[1:5])
