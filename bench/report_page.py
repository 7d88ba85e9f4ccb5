"""The morning page at scale: report.html's size and the time to render it, for nights of 100
and 1,000 experiments (testing/pages.py synthetic_night: the shapes of a long night, written
through the journal, no runs executed).

    python bench/report_page.py [--sizes 100,1000] [--loads 5] [--out bench/results/report_page.jsonl]

For each size: the file's bytes and DOM nodes; Python's time to build the page from the journal
(page_data + html, median of 3; `overnight serve` pays this once per journal change); and in
headless Chromium (Debian's, via Selenium) the median over --loads fresh loads of the page's
own clock (ms): first contentful paint, DOMContentLoaded, the load event, page.js ready; the
table's first layout when scrolled to (the page skips it until then) and opening a row's panel
(made from its text, laid out). One browser at a time, nothing else running: quote the
load average printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from task_throughput import cpu_line  # noqa: E402

from overnight.journal import Journal  # noqa: E402
from overnight.report import page_data  # noqa: E402
from overnight.report.html import render  # noqa: E402
from overnight.task_load import load_task  # noqa: E402
from overnight.testing.browser import chromium, load_timing, wait_for, why_no_browser  # noqa: E402
from overnight.testing.pages import synthetic_night  # noqa: E402


def python_seconds(root: Path, tag: str, repeats: int = 3) -> tuple[float, str]:
    journal = Journal.reader(root / ".overnight" / "journal.db")
    task = load_task(root)
    times, text = [], ""
    for _ in range(repeats):
        t = time.perf_counter()
        text = render(page_data.build(journal, tag, task, root / ".overnight"))
        times.append(time.perf_counter() - t)
    journal.close()
    return statistics.median(times), text


SCROLL_TO_ROW = """
const t = performance.now(), row = document.getElementById('row-' + arguments[0]);
row.scrollIntoView(); row.getBoundingClientRect(); document.body.offsetHeight;
return performance.now() - t;
"""
OPEN_PANEL = """
const id = arguments[0], done = arguments[arguments.length - 1], t = performance.now();
window.addEventListener('hashchange', () => {
  const p = document.getElementById('exp-' + id);
  done(p && p.offsetHeight > 0 ? performance.now() - t : -1);
}, {once: true});
location.hash = '#exp-' + id;
"""


def browser_figures(page: Path, loads: int, n: int) -> dict:
    rows = []
    with chromium() as d:
        for _ in range(loads):
            d.get("about:blank")
            d.get(page.as_uri())
            wait_for(lambda: d.execute_script("return document.readyState === 'complete'"), every=0.02)
            timing = load_timing(d)
            # in the page's clock: the table's first layout when scrolled to (skipped until then),
            # then a row's panel made from its text and laid out (what a click does, hashchange)
            timing["table_first_view_ms"] = d.execute_script(SCROLL_TO_ROW, n // 2)
            timing["panel_open_ms"] = d.execute_async_script(OPEN_PANEL, n // 2)
            rows.append(timing)
    keys = {k for r in rows for k, v in r.items() if v is not None}  # a load may report no paint entry
    out = {k: statistics.median(r[k] for r in rows if r[k] is not None) for k in sorted(keys)}
    out["loads"] = loads
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000")
    ap.add_argument("--loads", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "report_page.jsonl")
    args = ap.parse_args()
    print(f"cpu: {cpu_line()}; load {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    no_browser = why_no_browser()
    if no_browser:
        print(f"no browser ({no_browser}): sizes and Python times only")
    work = Path(tempfile.mkdtemp(prefix="overnight-page-"))
    for n in map(int, args.sizes.split(",")):
        root = synthetic_night(work / f"n{n}", n, tag="big")
        seconds, text = python_seconds(root, "big")
        page = root / "report.html"
        page.write_text(text)
        fig = {"experiments": n, "bytes": len(text.encode()), "python_build_s": round(seconds, 3)}
        if not no_browser:
            fig |= {k: round(v, 1) for k, v in browser_figures(page, args.loads, n).items()}
        fig |= {"cpu": cpu_line(), "load_average": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d")}
        print(json.dumps(fig), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(fig) + "\n")


if __name__ == "__main__":
    main()
