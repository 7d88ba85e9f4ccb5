"""Screening (--screen, night/screen.py) on the real toy task: a candidate's short run under
OVERNIGHT_BUDGET x fraction, paired with the incumbent's; the screened-out ones never pay a
full run; the rank check turns screening off where short runs rank changes the other way."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from overnight.errors import OvernightError
from overnight.night.config import RunConfig
from overnight.night.controller import Controller
from overnight.night.screen import ScreenSettings, kendall_tau
from overnight.night.tags import open_journal
from overnight.records import ExpStatus, RunStatus
from overnight.report.status import status_dict
from overnight.testing.gitutil import check_consistent
from overnight.testing.nights import Scripted, night_seeds, set_knobs
from overnight.testing.procs import CLI, kill_controller_when
from overnight.testing.toy import write_toy

GIT_ID = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}
SHORT = {"TOY_SHORT_BELOW": "0.5"}  # the toy's budget is 1 s: a screen run (0.25 s) scores 0.1 worse


def screened_night(root, n, screening=ScreenSettings(), **kw):
    cfg = RunConfig(tag="t", proposer="random", judge="noise", experiments=n, screen=True, screening=screening, **kw)
    return Controller(root, cfg)


def test_a_clearly_worse_candidate_is_screened_out_and_a_better_one_promoted(tmp_path):
    root = write_toy(tmp_path / "toy", env=SHORT)
    c = screened_night(root, 4)
    c.proposer = Scripted(
        set_knobs(LEARNING_RATE=1.0),  # far worse: one short run, nothing more
        set_knobs(ACTIVATION="gelu"),  # better by 0.02 (10 noise sds): promoted, kept
        set_knobs(USE_NORM=True),  # better by 0.01 on top: screened against the new incumbent
    )
    c.run()
    h = {e.id: e for e in c.journal.experiments("t")}
    base, bad, good, better = h[1], h[2], h[3], h[4]
    # The baseline: its full seeds (2, and the partners the pairs needed) and 4 screen seeds, each
    # run journaled with its budget.
    assert {r.budget for r in base.runs} == {1.0} and len(base.runs) >= 2 and len(base.screens) == 4
    seeds = night_seeds(c.journal, "t", 8)  # the night's, drawn from its secret
    assert {r.budget for r in base.screens} == {0.25} and [r.seed for r in base.screens] == seeds[:4]
    # The short run really was short: the toy scores a run under 0.5 s of budget 0.1 worse.
    full0 = next(r.value for r in base.runs if r.seed == seeds[0])
    short0 = next(r.value for r in base.screens if r.seed == seeds[0])
    assert short0 == pytest.approx(full0 + 0.1, abs=1e-9)
    assert bad.status == ExpStatus.SCREENED and bad.runs == [] and len(bad.screens) == 1
    assert bad.reason.startswith("screened out at 25 % of the budget: ") and bad.screens[0].budget == 0.25
    assert good.status == ExpStatus.KEPT and len(good.screens) == 1 and good.runs
    assert better.status == ExpStatus.KEPT and better.parent_id == good.id
    # The new incumbent's own screen run is #4's partner: no extra run.
    assert [r.seed for r in good.screens] == seeds[:1] and len(better.screens) == 1
    verdicts = {json.loads(e["message"])["exp"]: json.loads(e["message"]) for e in c.journal.events("t", "screen")}
    assert {i: v["verdict"] for i, v in verdicts.items()} == {2: "out", 3: "promoted", 4: "promoted"}
    assert verdicts[2]["z"] < -1.28 < verdicts[3]["z"]
    # results.tsv: one row per experiment (the screened one a discard at its short value), and
    # the branch holds the kept changes only.
    rows = [r.split("\t") for r in (root / ".overnight" / "t" / "results.tsv").read_text().splitlines()[1:]]
    assert [r[3] for r in rows] == ["keep", "discard", "keep", "keep"]
    assert float(rows[1][1]) == pytest.approx(bad.screens[0].value) and "screened out" in rows[1][4]
    check_consistent(root, "t", list(h.values()))
    d = status_dict(c.journal, "t", c.task.metric)["screen"]
    assert (d["on"], d["screened_out"], d["promoted"], d["audits"]) == (True, 1, 2, 0)
    # One full run spared; seven short runs paid (the baseline's 4, the candidates' 3).
    assert d["runs_saved"] == pytest.approx(1 - 0.25 * 7)


def test_the_rank_check_turns_screening_off_where_short_runs_rank_the_other_way(tmp_path):
    root = write_toy(tmp_path / "toy", env={**SHORT, "TOY_SHORT_RANKS": "reverse"})
    c = screened_night(root, 7, ScreenSettings(rank_min=3))
    # Each worse than the last at full budget, so each looks better than the last when short.
    c.proposer = Scripted(*(set_knobs(LEARNING_RATE=lr) for lr in (0.05, 0.1, 0.5, 1.0, 2.0, 3.0)))
    c.run()
    h = c.journal.experiments("t")
    off = c.journal.events("t", "screen-off")
    assert len(off) == 1 and "Kendall's tau -1.00 over 3 candidates" in off[0]["message"]
    assert all(e.status == ExpStatus.DISCARDED for e in h[1:])  # promoted, then discarded at full budget
    assert h[-1].screens == [] and h[-1].runs  # after the check: no screen run any more
    d = status_dict(c.journal, "t", c.task.metric)["screen"]
    assert d["on"] is False and d["off"] == off[0]["message"] and d["rank_tau"] == pytest.approx(-1.0)


def test_an_audited_candidate_runs_at_full_budget_and_its_keep_turns_screening_off(tmp_path):
    # Short runs rank the other way: gelu (better at full budget) looks clearly worse when short.
    root = write_toy(tmp_path / "toy", env={**SHORT, "TOY_SHORT_RANKS": "reverse"})
    c = screened_night(root, 3, ScreenSettings(audit_every=1))
    c.proposer = Scripted(set_knobs(ACTIVATION="gelu"), set_knobs(USE_NORM=True))
    c.run()
    h = c.journal.experiments("t")
    first = json.loads(c.journal.events("t", "screen")[0]["message"])
    assert first["verdict"] == "audit" and first["z"] < -1.28
    assert h[1].status == ExpStatus.KEPT  # the audit ran it at full budget: the judge kept it
    off = c.journal.events("t", "screen-off")
    assert len(off) == 1 and f"#{h[1].id} was kept at full budget although the screen would have" in off[0]["message"]
    assert all(not e.screens for e in h if e.created > off[0]["time"])
    assert status_dict(c.journal, "t", c.task.metric)["screen"]["on"] is False


def test_screening_needs_the_noise_judge(toy_repo):
    with pytest.raises(OvernightError, match="--screen needs the noise judge"):
        Controller(toy_repo, RunConfig(tag="t", judge="greedy", screen=True))


def test_kendall_tau():
    assert kendall_tau([(1, 1), (2, 2), (3, 3)]) == 1.0
    assert kendall_tau([(1, 3), (2, 2), (3, 1)]) == -1.0
    assert kendall_tau([(1, 1), (2, 3), (3, 2), (4, 4)]) == pytest.approx(4 / 6)


def _screen_running(root, min_id):
    """The candidate (id >= min_id) whose screen run is in flight, or None."""
    if not (root / ".overnight" / "journal.db").exists():
        return None
    j = open_journal(root)
    row = j.db.execute(
        "SELECT experiment_id FROM runs WHERE screen=1 AND status='running' AND experiment_id >= ?", (min_id,)
    ).fetchone()
    j.close()
    return row[0] if row else None


def test_a_screened_night_resumes_after_sigkill(tmp_path):
    root = write_toy(tmp_path / "toy", env={**SHORT, "TOY_SLEEP": "budget"})
    cmd = [*CLI, "run", str(root), "--experiments", "7", "--quiet", "--tag", "night", "--screen", "--seed", "3"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    victim = None

    def screening():
        nonlocal victim
        victim = _screen_running(root, min_id=3)
        return victim is not None

    kill_controller_when(proc, screening, lambda: "no screen run started", 60)  # SIGKILL mid screen run
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stdout + again.stderr
    j = open_journal(root)
    h = j.experiments("night")
    assert len(h) == 7
    check_consistent(root, "night", h)
    stopped = next(e for e in h if e.id == victim)
    assert [r.status for r in stopped.screens][:2] == [RunStatus.INTERRUPTED, RunStatus.OK]
    assert stopped.screens[0].seed == stopped.screens[1].seed == night_seeds(j, "night", 1)[0]  # the screen seed
    decided = [json.loads(e["message"])["exp"] for e in j.events("night", "screen")]
    assert sorted(decided) == sorted(set(decided)) == [e.id for e in h[1:]]  # one decision each
    for e in h[1:]:
        assert e.screens and (e.status == ExpStatus.SCREENED) == (not e.runs)
    rows = (root / ".overnight" / "night" / "results.tsv").read_text().splitlines()[1:]
    assert [r.split("\t")[0] for r in rows] == [e.commit_sha[:7] for e in h]
    j.close()


def test_screening_is_on_by_default_only_where_it_can_work(tmp_path):
    """The default (issue 16: more verified gain per hour): on with the noise judge; off with
    greedy (no noise to scale the screen by) and for a task whose code fixes its budget."""
    from overnight.testing.autoresearch import write_autoresearch

    task = write_toy(tmp_path / "toy")
    assert Controller(task, RunConfig(tag="a", proposer="random")).cfg.screen is True
    assert Controller(task, RunConfig(tag="b", proposer="random", judge="greedy")).cfg.screen is False
    assert Controller(task, RunConfig(tag="c", proposer="random", screen=False)).cfg.screen is False
    assert open_journal(task).tag_info("a")["config"]["screen"] is True  # journaled as resolved
    fixed = write_autoresearch(tmp_path / "ar")
    (fixed / "overnight.toml").write_text(
        '[task]\ncommand = "python train.py"\neditable = ["train.py"]\nbudget = 1\nfixed_budget = true\n'
        '[metric]\nname = "val_bpb"\nsource = "stdout"\n'
    )
    subprocess.run(["git", "-C", str(fixed), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(fixed), "commit", "-qm", "spec"], check=True, env=GIT_ID)
    assert Controller(fixed, RunConfig(tag="d", proposer="random")).cfg.screen is False
    with pytest.raises(OvernightError, match="fixed_budget"):
        Controller(fixed, RunConfig(tag="e", proposer="random", screen=True))
