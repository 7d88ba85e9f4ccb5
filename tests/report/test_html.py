"""report.html checked by parsing (no browser): what a reader looks for is in the page, and
nothing in it reaches outside the file.

The night (testing/pages.py llm_night): #1 baseline, #2 gelu kept, #3 a reply without an edit
(rejected), #4 a crash, #5 USE_NORM kept, #6 a worse change whose description is markup
(screened out); then verify and ablate on two fresh seeds each.
"""

from __future__ import annotations

import json
import math
import re

import pytest
from scipy import stats

from overnight.night.state import REBASED_KEY
from overnight.night.tags import open_journal
from overnight.records import ExpStatus, RunResult, RunStatus
from overnight.report import page_data
from overnight.report.html import render
from overnight.task_load import load_task
from overnight.testing.html_tree import panels, parse
from overnight.testing.nights import ToyNight
from overnight.testing.pages import NASTY
from overnight.testing.toy import write_toy


@pytest.fixture(scope="module")
def page(page_night):
    root = page_night
    journal = open_journal(root)
    history = journal.experiments("t")
    events = journal.events("t")
    journal.close()
    text = (root / ".overnight" / "t" / "report.html").read_text()
    return text, parse(text), history, events


def test_report_command_writes_the_page_beside_the_markdown(page_night, cli, tmp_path):
    res = cli("report", page_night, "--out", tmp_path / "out")
    assert res.exit_code == 0, res.output
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"progress.png", "report.md", "report.html"}
    assert "report.html" in res.output


def test_page_is_self_contained(page):
    text, dom, _, _ = page
    for node in dom.walk():
        for attr in ("src", "href", "action", "poster", "data"):
            value = node.attrs.get(attr)
            if value is not None and attr != "data":
                assert value.startswith("#") or value.startswith("data:"), (node.tag, attr, value)
        assert node.tag not in ("link", "iframe", "img", "object", "embed"), node.tag
    scripts = [s for s in dom.find_all("script") if "panel-src" not in s.classes]
    assert len(scripts) == 1 and "src" not in scripts[0].attrs  # ours, inline
    inert = [s for s in dom.find_all("script") if "panel-src" in s.classes]
    assert inert and all(s.attrs["type"] == "text/html" for s in inert)  # panels: text until opened
    csp = next(m for m in dom.find_all("meta") if m.attrs.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in csp.attrs["content"] and "connect-src 'self'" in csp.attrs["content"]
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", text)  # no style sheet fetches a font or picture


def test_table_has_one_row_per_experiment_with_its_facts(page):
    _, dom, history, _ = page
    rows = dom.find("table", id="exp-table").find("tbody").find_all("tr")
    assert [int(r.attrs["data-id"]) for r in rows] == [e.id for e in history]
    assert [r.attrs["data-status"] for r in rows] == [e.status.value for e in history]
    by_id = {int(r.attrs["data-id"]): r for r in rows}
    baseline = by_id[1].find_all("td")
    runs = history[0].runs
    assert baseline[2].text.startswith(f"{history[0].value:.6f} = mean of") and len(runs) > 6
    shown = [(s.attrs["title"], s.text) for s in baseline[2].find_all("span") if "title" in s.attrs]
    assert shown == [(f"seed {r.seed}", f"{r.value:.6f}") for r in runs[:6]]  # the first six, then a count
    assert baseline[2].text.endswith(f"… {len(runs)} runs")
    kept = by_id[2].find_all("td")
    assert kept[1].find(cls="badge").text == "kept" and "confirmed" in kept[1].text
    gain, low, high = re.findall(r"[+-]\d+\.\d+", kept[3].text)
    assert float(low) < float(gain) < float(high) and float(low) > 0  # a confirmed keep: interval above 0
    assert kept[4].text == "llm" and "screen" in kept[5].text and kept[7].text.endswith("MB")
    assert by_id[4].find_all("td")[1].find(cls="reason").text == "exit code 1 · diverged: loss is nan"
    assert by_id[6].find_all("td")[3].text == "–"  # screened out: no full run, no gain


def test_chart_has_a_mark_per_finished_experiment(page):
    _, dom, history, events = page
    chart = dom.find("svg", id="chart")
    marks = chart.find_all(cls="pt")
    assert sorted(int(m.attrs["data-id"]) for m in marks) == sorted(e.id for e in history if e.status.final)
    kinds = {int(m.attrs["data-id"]): m.classes for m in marks}
    assert "kept" in kinds[2] and "kept" in kinds[5] and "failed" in kinds[4] and "failed" in kinds[3]
    assert "screened" in kinds[6]
    titles = {int(m.attrs["data-id"]): m.find("title").text for m in marks}
    assert "Switch the activation to gelu" in titles[2] and f"{history[1].value:.6f}" in titles[2]
    verify = json.loads(next(e for e in events if e["kind"] == "verify")["message"])
    assert len(chart.find_all(cls="verified")) == len(verify["baseline"]) + len(verify["values"])
    assert len(chart.find_all(cls="baseline-band")) == 1 and len(chart.find_all(cls="incumbent-band")) == 2
    assert chart.find_all("polyline", cls="best")
    links = {a.attrs["href"] for a in chart.find_all("a")}
    assert links == {f"#exp-{e.id}" for e in history if e.status.final}


def test_each_experiment_has_a_panel_with_diff_runs_log_and_reply(page):
    _, dom, history, _ = page
    panels_ = panels(dom)
    assert sorted(panels_) == [e.id for e in history]
    assert all(p.attrs["id"] == f"exp-{i}" for i, p in panels_.items())
    added = [s.text for s in panels_[2].find("pre", cls="diff").find_all(cls="add")]
    assert '+ACTIVATION = "gelu"  # relu | gelu | silu' in added
    removed = [s.text for s in panels_[2].find("pre", cls="diff").find_all(cls="del")]
    assert '-ACTIVATION = "relu"  # relu | gelu | silu' in removed
    runs = panels_[2].find("table", cls="runs").find_all("tr")[1:]
    assert len(runs) == len(history[1].runs) + len(history[1].screens)
    shown = {int(r.find_all("td")[0].text): r.find_all("td")[5].text for r in runs}
    journaled = {r.id: "–" if r.rescored is None else f"{r.rescored:.6f}" for r in history[1].runs + history[1].screens}
    assert shown == journaled and sum(v != "–" for v in shown.values()) >= 2  # the keep's runs, re-scored
    assert "diverged: loss is nan" in panels_[4].find("pre", cls="log").text
    reply = panels_[3].find("pre", cls="reply").text  # the rejected proposal: both replies
    assert "No blocks here." in reply and "Still none." in reply
    assert "Switch the activation to gelu" in panels_[2].find("pre", cls="reply").text
    assert "1,200 tokens in" in panels_[2].text


def test_summary_answers_what_was_kept_why_and_what_it_cost(page):
    _, dom, history, events = page
    summary = dom.find("section", id="summary")
    chain = summary.find("table", cls="chain").find_all("tr")[1:]
    assert [r.find("a").text for r in chain] == ["#2", "#5"]
    ablate = json.loads(next(e for e in events if e["kind"] == "ablate")["message"])
    for row, change in zip(chain, ablate["changes"]):
        assert f"{change['gain']:+.6f}" in row.find_all("td")[4].text  # each change's contribution
    cards = {c.find("span").text: c.text for c in summary.find_all(cls="card")}
    verified = next(k for k in cards if k.startswith("verified on"))
    # Each check names its currency: the clock and budget it ran under, and each side's wall time.
    assert verified == "verified on 2 fresh seeds (wall clock, 1 s budget)" and "95 % CI" in cards[verified]
    assert "wall s per run" in cards[verified]
    assert "tokens" in cards["model cost"] and "not priced" in cards["model cost"]
    facts = summary.find("ul", cls="facts").text
    assert "noise: one run's sd" in facts and "smallest confirmable gain" in facts and "screen at 25 %" in facts
    assert "1 slot(s), local" in facts and "model: 5 proposals (1 rejected edits)" in facts
    other = dom.find("section", id="guards").find("details").text
    assert "fallback" not in other  # the scripted endpoint never failed this night


def test_markup_from_a_candidate_is_shown_as_text(page):
    text, dom, history, _ = page
    assert history[5].description.startswith(NASTY)
    assert "<script>alert" not in text and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert NASTY in panels(dom)[6].find("h3").text


def test_rebase_and_rescore_events_show_in_the_panel(tmp_path):
    night = ToyNight(write_toy(tmp_path / "toy"))
    j = night.journal
    e1 = night.record(type("P", (), {"description": "a", "params": {}, "edits": {}})(), ExpStatus.DISCARDED, 1.3)
    moved = night.record(
        type("P", (), {"description": "a (rebased)", "params": {REBASED_KEY: e1.id}, "edits": {}})(),
        ExpStatus.DISCARDED,
        1.25,
    )
    run = j.start_run(moved.id, 0)
    j.finish_run(run, RunResult(RunStatus.OK, 1.25, 0, 1.0, 0.5))
    j.set_mismatch("t", run, "the re-score read 1.31, the run said 1.25")
    page = page_data.build(j, "t", load_task(night.root), night.state)
    panel = panels(parse(render(page)))[moved.id]
    assert f"from #{e1.id} onto #1" in panel.text
    events = panel.find("ul", cls="events").text
    assert "rescore-mismatch" in events and "the re-score read 1.31" in events
    assert panel.find("table", cls="runs").find_all("tr")[1].find_all("td")[3].text == "mismatch"


def test_a_night_that_just_started_renders(tmp_path):
    night = ToyNight(write_toy(tmp_path / "toy"))
    page = page_data.build(night.journal, "t", load_task(night.root), night.state, live=True)
    dom = parse(render(page))
    assert dom.find("body").attrs["data-live"] == "1"
    assert len(dom.find("table", id="exp-table").find("tbody").find_all("tr")) == 1
    assert "No change beat the baseline." in dom.find("section", id="summary").text


def _exp(values: dict[int, float], value: float | None = None):
    from overnight.records import Experiment, Run

    runs = [Run(i, 0, seed, RunStatus.OK, 0.0, value=v) for i, (seed, v) in enumerate(values.items())]
    mean = sum(values.values()) / len(values) if values else None
    return Experiment(
        0, "t", None, "", None, {}, None, "", "p", {}, ExpStatus.DISCARDED, None, value or mean, 0, 0, runs=runs
    )


def test_gain_interval_is_paired_by_seed_else_welch(page_night):
    metric = load_task(page_night).metric  # minimize: a lower value is a gain
    parent = _exp({0: 1.00, 1: 1.02, 2: 0.99})
    child = _exp({0: 0.97, 1: 1.00, 2: 0.95})
    gain, low, high = page_data.gain_interval(child, parent, metric)
    diffs = [1.00 - 0.97, 1.02 - 1.00, 0.99 - 0.95]
    ci = stats.ttest_1samp(diffs, 0).confidence_interval(0.95)
    assert gain == pytest.approx(sum(diffs) / 3) and (low, high) == pytest.approx((ci.low, ci.high))
    other = _exp({7: 0.97, 8: 1.00, 9: 0.95, 10: 0.96})  # no seed in common: Welch
    gain, low, high = page_data.gain_interval(other, parent, metric)
    ci = stats.ttest_ind([1.00, 1.02, 0.99], [0.97, 1.00, 0.95, 0.96], equal_var=False).confidence_interval(0.95)
    assert (low, high) == pytest.approx((ci.low, ci.high)) and gain == pytest.approx((low + high) / 2)
    assert gain == pytest.approx((1.00 + 1.02 + 0.99) / 3 - (0.97 + 1.00 + 0.95 + 0.96) / 4)
    one = _exp({0: 0.9})
    assert page_data.gain_interval(one, parent, metric) == (pytest.approx(parent.value - 0.9), None, None)
    assert page_data.gain_interval(_exp({}), parent, metric) == (None, None, None)
    assert not math.isnan(gain)
