"""Headless Chromium for the page tests and bench/report_page.py: Debian's `chromium` driven by
Selenium through Debian's `chromium-driver` (the two come as one version; Selenium's own driver
download is never tried: this machine has no network for it).

`why_no_browser()` says why there is none (the tests skip with that reason); `chromium()` starts
one with the flags a closed network needs (no background networking, no component updates)
in a fresh profile; `screenshot()` writes the whole page, not just the viewport.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

BINARIES = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver",)


def _which(names: tuple[str, ...], env: str) -> str | None:
    given = os.environ.get(env)
    if given:
        return given if Path(given).exists() else None
    return next((p for p in map(shutil.which, names) if p), None)


def why_no_browser() -> str | None:
    """None when a headless browser can be driven here; else the reason, with the fix."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if _which(BINARIES, "OVERNIGHT_CHROMIUM") is None:
        return "no chromium on PATH (apt-get install chromium chromium-driver; .ci/run does)"
    if _which(DRIVERS, "OVERNIGHT_CHROMEDRIVER") is None:
        return "no chromedriver on PATH (apt-get install chromium-driver)"
    return None


@contextlib.contextmanager
def chromium(width: int = 1400, height: int = 1000):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="overnight-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = _which(BINARIES, "OVERNIGHT_CHROMIUM")
    for flag in (
        "--headless=new",
        "--no-sandbox",  # root in a container has no user namespace for the sandbox
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",  # a closed network refuses its calls, many at a time
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=Service(_which(DRIVERS, "OVERNIGHT_CHROMEDRIVER")))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(driver, path: Path) -> Path:
    """The whole page as a PNG (Chrome DevTools' capture beyond the viewport)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def wait_for(predicate, timeout: float = 20.0, every: float = 0.2, what: str = "the page"):
    """Poll `predicate` until it returns something truthy; its last value, or AssertionError."""
    from selenium.common.exceptions import StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except StaleElementReferenceException:  # the live page replaced the element while it was read
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def load_timing(driver) -> dict:
    """The page's own clock (ms from navigation start): parsed, loaded, first paint, page.js ready."""
    return driver.execute_script(
        """
        const nav = performance.getEntriesByType('navigation')[0];
        const paint = performance.getEntriesByType('paint').find(p => p.name === 'first-contentful-paint');
        const ready = performance.getEntriesByName('overnight-ready')[0];
        return {dom_content_loaded: nav.domContentLoadedEventEnd, load_event: nav.loadEventEnd || null,
                first_contentful_paint: paint ? paint.startTime : null, ready: ready ? ready.startTime : null,
                nodes: document.getElementsByTagName('*').length};
        """
    )


def screenshot_dir() -> Path:
    """Where the page tests leave their screenshots for review: $OVERNIGHT_SCREENSHOTS, else
    build/screenshots under the folder pytest runs in (build/ is ignored by git)."""
    return Path(os.environ.get("OVERNIGHT_SCREENSHOTS") or Path.cwd() / "build" / "screenshots")


def console_errors(driver) -> list[str]:
    """The page's console errors since the last call (a CSP violation is one)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
