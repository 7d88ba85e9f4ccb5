"""report.html and `overnight serve` in headless Chromium (Debian's chromium + chromium-driver,
driven by Selenium): what a person checks, checked in a real browser. Each test leaves its
screenshots in build/screenshots/ (or $OVERNIGHT_SCREENSHOTS) for review.

Without a browser these tests skip with the reason; test_html.py and test_serve.py still check
the same pages by parsing.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from contextlib import closing

import pytest

from overnight.journal import Journal
from overnight.report import page_data
from overnight.report.html import render
from overnight.task_load import load_task
from overnight.testing.browser import (
    chromium,
    console_errors,
    load_timing,
    screenshot,
    screenshot_dir,
    wait_for,
    why_no_browser,
)
from overnight.testing.pages import Served, synthetic_night
from overnight.testing.toy import write_toy

pytestmark = pytest.mark.skipif(why_no_browser() is not None, reason=f"no headless browser: {why_no_browser()}")

CSS = "css selector"


def visible_rows(d) -> list:
    return [r for r in d.find_elements(CSS, "#exp-table tbody tr") if r.is_displayed()]


def test_report_in_the_browser(page_night):
    from selenium.webdriver import ActionChains

    page = page_night / ".overnight" / "t" / "report.html"
    shots = screenshot_dir()
    with chromium() as d:
        d.get(page.as_uri())
        wait_for(lambda: d.execute_script("return window.__overnight && window.__overnight.ready"))
        screenshot(d, shots / "report.png")
        rows = d.find_elements(CSS, "#exp-table tbody tr")
        assert [r.get_attribute("data-id") for r in rows] == ["1", "2", "3", "4", "5", "6"]
        finished = int(d.find_element(CSS, "#night").get_attribute("data-finished"))
        assert len(d.find_elements(CSS, "#chart .pt")) == finished == 6

        # a kept row opens its diff
        assert d.find_elements(CSS, "#exp-2") == []  # a panel is inert text until opened
        d.find_element(CSS, "#row-2 td:last-child").click()
        panel = wait_for(lambda: d.find_element(CSS, "#exp-2").is_displayed() and d.find_element(CSS, "#exp-2"))
        added = [s.text for s in panel.find_elements(CSS, "pre.diff .add")]
        assert '+ACTIVATION = "gelu"  # relu | gelu | silu' in added
        assert panel.find_element(CSS, "pre.diff .add").value_of_css_property("background-color") != "rgba(0, 0, 0, 0)"
        d.save_screenshot(str(shots / "report-kept-panel.png"))
        d.find_element(CSS, "body").send_keys("\ue00c")  # Escape closes it
        wait_for(lambda: not d.find_element(CSS, "#exp-2").is_displayed(), what="the panel to close")

        # sortable: id twice is descending
        header = d.find_elements(CSS, "#exp-table thead th")[0]
        header.click()
        header.click()
        assert [r.get_attribute("data-id") for r in d.find_elements(CSS, "#exp-table tbody tr")][0] == "6"
        # filterable by status
        d.find_element(CSS, "input[name=status][value=kept]").click()
        assert {r.get_attribute("data-status") for r in visible_rows(d)} == {"rejected", "crashed", "screened"}
        assert d.find_element(CSS, "#shown").text == "3 of 6 experiments shown"
        d.find_element(CSS, "input[name=status][value=kept]").click()
        assert len(visible_rows(d)) == 6

        # hover a chart mark: its description and value
        d.execute_script("document.getElementById('chart').scrollIntoView()")
        ActionChains(d).move_to_element(d.find_element(CSS, "#chart .pt.kept[data-id='2']")).perform()
        tip = wait_for(lambda: d.find_element(CSS, "#tip").is_displayed() and d.find_element(CSS, "#tip"))
        assert "#2 kept" in tip.text and "Switch the activation to gelu" in tip.text
        d.save_screenshot(str(shots / "report-chart-hover.png"))
        assert console_errors(d) == []  # nothing blocked by the page's CSP, no script error


def night_rows(db, tag: str) -> tuple[int, int]:
    """(experiments, finished) of `tag`, read the way serve does (read-only)."""
    with sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True) as c:
        statuses = [r[0] for r in c.execute("SELECT status FROM experiments WHERE tag=?", (tag,))]
    return len(statuses), sum(s not in ("proposed", "running") for s in statuses)


def test_live_page_follows_a_running_night(tmp_path):
    root = write_toy(tmp_path / "toy", env={"TOY_SLEEP": "0.7"})
    db = root / ".overnight" / "journal.db"
    night = subprocess.Popen(
        [sys.executable, "-m", "overnight", "run", str(root), "--tag", "live", "--experiments", "5",
         "--proposer", "random", "--judge", "greedy", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    shots = screenshot_dir()
    try:
        wait_for(lambda: db.exists() and night_rows(db, "live")[0] >= 1, timeout=60, what="the night to start")
        with Served(root, "--tag", "live") as s, chromium() as d:
            d.get(s.url)
            wait_for(lambda: d.execute_script("return window.__overnight && window.__overnight.ready"))
            d.execute_script("window.__notReloaded = true")
            seen = int(d.find_element(CSS, "#night").get_attribute("data-finished"))
            assert seen < 5, "the night ended before the page loaded: nothing left to follow"

            def refreshed():
                now = int(d.find_element(CSS, "#night").get_attribute("data-finished"))
                return now > seen and now

            now = wait_for(refreshed, timeout=60, what="a newly finished experiment on the page")
            assert d.execute_script("return window.__notReloaded === true && window.__overnight.refreshes >= 1")
            assert len(d.find_elements(CSS, "#chart .pt")) == now
            rows = d.find_elements(CSS, "#exp-table tbody tr")
            assert len(rows) == int(d.find_element(CSS, "#night").get_attribute("data-experiments"))
            screenshot(d, shots / "live-running.png")
            assert night.wait(timeout=120) == 0, night.stderr.read()
            wait_for(
                lambda: d.find_element(CSS, "#night").get_attribute("data-finished") == "5",
                timeout=30,
                what="the last experiment on the live page",
            )
            assert len(d.find_elements(CSS, "#exp-table tbody tr")) == night_rows(db, "live")[0] == 5
            assert len(d.find_elements(CSS, "#chart .pt")) == 5
            assert d.execute_script("return window.__notReloaded === true")
            screenshot(d, shots / "live-done.png")
            assert console_errors(d) == []
    finally:
        if night.poll() is None:
            night.kill()
            night.wait()
        night.stderr.close()


def test_thousand_experiments(tmp_path):
    """The page of a 1,000-experiment night: every row and mark there; its size and the time to
    render are written to page-1000.json beside the screenshots (bench/report_page.py is the
    benchmark that quotes them; no time is asserted here)."""
    root = synthetic_night(tmp_path / "big", 1000)
    page = root / "report.html"  # the page alone: report.md and progress.png are not what is measured
    with closing(Journal.reader(root / ".overnight" / "journal.db")) as journal:
        page.write_text(render(page_data.build(journal, "big", load_task(root), root / ".overnight")))
    with chromium() as d:
        d.get(page.as_uri())
        wait_for(lambda: d.execute_script("return window.__overnight && window.__overnight.ready"))
        timing = load_timing(d)
        count = "return document.querySelectorAll(arguments[0]).length"  # not 1,000 element handles
        assert d.execute_script(count, "#exp-table tbody tr") == 1000
        finished = int(d.find_element(CSS, "#night").get_attribute("data-finished"))
        assert finished == 1000 and d.execute_script(count, "#chart .pt") == 1000
        d.find_element(CSS, "#row-500 td:last-child").click()
        wait_for(lambda: d.find_element(CSS, "#exp-500").is_displayed(), what="the panel of #500")
        d.save_screenshot(str(screenshot_dir() / "report-1000.png"))  # the window: the whole page is 60,000 px
    figures = {"experiments": 1000, "bytes": page.stat().st_size, **timing}
    (screenshot_dir() / "page-1000.json").write_text(json.dumps(figures, indent=1))
    print(f"\n1,000-experiment report.html: {figures}")
