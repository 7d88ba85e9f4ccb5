"""report.html: the night as one self-contained page (and, with `live`, `overnight serve`'s page).

One file, nothing fetched: the style sheet and page.js (report/static/) are inlined, the chart is
inline SVG (html_chart.py), every experiment's row and panel are in the page (html_parts.py). It
opens from disk in any browser. The summary, chart and table read without JavaScript (the
chart's marks have titles); page.js opens the experiments' panels (kept as inert text until
asked for: see _panel_source) and adds sorting, filtering, a tooltip and, when live, refreshing.

Sections, in the order a reader asks: what came of the night (summary: baseline -> best, the
verified gain, the kept chain with each change's contribution, what it cost), the progress
chart, every experiment, the guards and events.
"""

from __future__ import annotations

import time
from html import escape
from importlib import resources
from pathlib import Path

from overnight.journal import Journal
from overnight.night import screen
from overnight.report import page_data
from overnight.report.html_chart import chart_svg
from overnight.report.html_parts import COLUMNS, events_list, gain_cell, num, panel, row, seconds, signed, when
from overnight.report.status import headline, noise_line
from overnight.task import TaskSpec
from overnight.verify import conditions_text

# The page may load nothing from anywhere (self-contained, and a candidate's text cannot make
# it call out); only the live page's polls go back to the server it came from.
CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; connect-src 'self'"


def _static(name: str) -> str:
    return resources.files("overnight.report").joinpath("static", name).read_text()


def _card(label: str, value: str, note: str = "") -> str:
    note = f"<small>{note}</small>" if note else ""
    return f'<div class="card"><span>{label}</span><b>{value}</b>{note}</div>'


def _cards(page: page_data.PageData) -> str:
    d = page.status
    base, best = headline(d)
    cards = [_card("baseline", escape(base)), _card("best", escape(best))]
    if d["gain"] is not None:
        b = d["baseline"]["value"]
        rel = f"{100 * d['gain'] / abs(b):+.2f} %" if b else ""
        cards.append(_card("gain during the night", signed(d["gain"]), rel))
    for v in page.verifications:  # each check in its own currency: the clock and budget it ran under
        verdict = "confirmed" if v["low"] > 0 else "harmful" if v["high"] < 0 else "not distinguishable from 0"
        walls = (
            f"; wall s per run {v['wall']:.1f} vs {v['ref_wall']:.1f}" if v.get("wall") and v.get("ref_wall") else ""
        )
        cards.append(
            _card(
                f"verified on {len(v['values'])} fresh seeds ({escape(conditions_text(v))})",
                signed(v["gain"]),
                f"95 % CI [{signed(v['low'])}, {signed(v['high'])}]: {verdict}{walls}",
            )
        )
    span = seconds(max(d["updated"] - d["started"], 0))
    cards += [
        _card("experiments", f"{d['finished']} / {d['experiments']}", f"{d['experiments_per_hour']:.1f}/h over {span}"),
        _card("kept", str(d["kept"]), f"{d['runs_per_kept']:.1f} runs per keep" if d["runs_per_kept"] else ""),
        _card("failed", str(d["crashed"]), f"{d['duplicates']} duplicates answered from the journal"),
    ]
    if d["duty_cycle"] is not None:
        cards.append(_card("duty cycle", f"{100 * d['duty_cycle']:.0f} %", f"{len(d['slots'])} slot(s) training"))
    u = d["llm"]
    if u["proposals"] or u["fallback_proposals"]:
        cost = "not priced" if u["cost_usd"] is None else f"${u['cost_usd']:.4f}"
        cards.append(_card("model cost", cost, f"{u['tokens_in']:,} in / {u['tokens_out']:,} out tokens"))
    return '<div class="cards">' + "".join(cards) + "</div>"


def _chain(page: page_data.PageData) -> str:
    if not page.chain:
        return "<p>No change beat the baseline.</p>"
    ablated = page.ablate is not None
    head = "<tr><th>#</th><th>change</th><th>value</th><th>gain over its parent</th>"
    head += "<th>contribution (ablate)</th>" if ablated else ""
    rows = []
    for link in page.chain:
        v, a = link["view"], link["ablate"]
        cells = [
            f'<a href="#exp-{v.id}">#{v.id}</a>',
            escape(v.exp.description),
            num(v.exp.value),
            gain_cell(v),
        ]
        if ablated:
            cells.append(
                "not measured"
                if a is None or not a.get("values")
                else f"{signed(a['gain'])} <span class='ci'>[{signed(a['low'])}, {signed(a['high'])}]</span>"
            )
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    note = "" if ablated else "<p class='hint'>Run <code>overnight ablate</code> for what each change contributes.</p>"
    return f'<table class="chain">{head}</tr>{"".join(rows)}</table>{note}'


def _facts(page: page_data.PageData) -> str:
    d = page.status
    items = [
        f"metric <code>{escape(page.metric.name)}</code> ({page.metric.goal}), {page.budget:g} s per run; "
        f"{d['runs']} runs; started {when(d['started'])}, last change {when(d['updated'])}"
    ]
    for r in d["running"]:
        link = f'<a href="#exp-{r["id"]}">#{r["id"]}</a>'
        items.append(f"running now: {link} since {when(r['since'])}: {escape(r['description'][:120])}")
    for line in (noise_line(d), screen.summary_line(d["screen"])):
        if line:
            items.append(escape(line))
    if d["slots"]:
        where = ", ".join(
            f"slot {s['slot']} on {escape(str(s.get('node') or '-'))}"
            + (f" gpu {s['gpu']}" if s.get("gpu") is not None else "")
            + (f" ({100 * s['duty_cycle']:.0f} %)" if s["duty_cycle"] is not None else "")
            for s in d["slots"]
        )
        items.append(f"{len(d['slots'])} slot(s), {escape(str(d['slots'][0].get('executor') or 'local'))}: {where}")
    u = d["llm"]
    if u["proposals"] or u["fallback_proposals"]:
        per = "" if u["cost_per_kept"] is None else f", ${u['cost_per_kept']:.4f} per kept change"
        items.append(
            f"model: {u['proposals']} proposals ({u['rejected']} rejected edits), {u['calls']} calls{per}"
            + (f"; {u['fallback_proposals']} proposals from the optuna fallback" if u["fallback_proposals"] else "")
            + (f"; the model's edits could not be used: {escape(u['unusable_message'])}" if u.get("unusable") else "")
        )
    return '<ul class="facts">' + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _events(events: list[dict], empty: str) -> str:
    if not events:
        return f"<p>{empty}</p>"
    more = f"<p>{len(events) - 200} earlier ones are in the journal.</p>" if len(events) > 200 else ""
    return events_list(events[-200:]) + more


def _filters(page: page_data.PageData) -> str:
    counts: dict[str, int] = {}
    for v in page.experiments:
        counts[v.exp.status.value] = counts.get(v.exp.status.value, 0) + 1
    chips = "".join(
        f'<label class="chip {s}"><input type="checkbox" name="status" value="{s}" checked> {s} ({n})</label>'
        for s, n in sorted(counts.items())
    )
    return f'<div class="filters">{chips}<input type="search" id="q" placeholder="filter descriptions"></div>'


def _panel_source(v: page_data.ExpView, metric_name: str) -> str:
    """A panel's HTML as the text of an inert <script type="text/html">, made into elements by
    page.js when it is opened: a browser scans text far faster than it builds elements, and a
    thousand panels of diffs, runs and logs are most of the page (bench/report_page.py). Safe
    as text: everything from a candidate, a model or a log in it is escaped (no "</script")."""
    body = panel(v, metric_name)
    assert "</script" not in body.lower()
    return f'<script type="text/html" class="panel-src" data-id="{v.id}">{body}</script>'


def render(page: page_data.PageData) -> str:
    d = page.status
    head = "".join(f'<th data-type="{t}" tabindex="0">{label}</th>' for label, t in COLUMNS)
    importances = ""
    if page.importances:
        rows = "".join(f"<tr><td>{escape(k)}</td><td>{val:.3f}</td></tr>" for k, val in page.importances.items())
        importances = f'<h3>Parameter importances (Optuna, fANOVA)</h3><table class="chain">{rows}</table>'
    live = '<span id="live">live</span>' if page.live else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>overnight {escape(page.tag)}: {d["kept"]} kept of {d["experiments"]}</title>
<style>{_static("page.css")}</style></head>
<body data-live="{int(page.live)}">
<main id="night" data-version="{escape(page.version)}"
 data-experiments="{d["experiments"]}" data-finished="{d["finished"]}">
<header><h1>overnight <span class="tag">{escape(page.tag)}</span> {live}</h1>
<p class="generated">written {when(time.time())} from the journal</p></header>
<section id="summary"><h2>What came of the night</h2>{_cards(page)}
<h3>Kept changes (the best is built from these)</h3>{_chain(page)}{_facts(page)}{importances}</section>
<section id="progress"><h2>Progress</h2>
<p class="legend"><i class="k"></i>kept <i class="d"></i>discarded <i class="f"></i>failed
<i class="s"></i>screened out / duplicate <i class="b"></i>baseline ± 2 sd <i class="inc"></i>incumbent ± 2 sd
<i class="v"></i>verified (fresh seeds)</p>
{chart_svg(page)}<div id="tip" hidden></div></section>
<section id="experiments" style="contain-intrinsic-size: auto {60 + 48 * len(page.experiments)}px">
<h2>Experiments</h2>{_filters(page)}
<table id="exp-table"><thead><tr>{head}</tr></thead><tbody>
{"".join(row(v) for v in page.experiments)}
</tbody></table><p id="shown"></p></section>
<section id="guards"><h2>Guards and drift</h2>{_events(page.guard_events, "No guard fired and no drift was seen.")}
<details><summary>Other events ({len(page.other_events)})</summary>
{_events(page.other_events, "None.")}</details></section>
<div id="panels">
{"".join(_panel_source(v, page.metric.name) for v in page.experiments)}
</div>
<noscript><p>Each experiment's panel needs JavaScript; <code>overnight show ID</code> prints one.</p></noscript>
</main>
<script>{_static("page.js")}</script>
</body></html>
"""


def write_html(journal: Journal, tag: str, task: TaskSpec, state_dir: Path, path: Path) -> Path:
    page = page_data.build(journal, tag, task, state_dir)
    page.importances = page_data.importances(state_dir, tag)
    path.write_text(render(page))
    return path
