"""`--hours H` ends the night within H plus one run's timeout, re-scores included.

At the deadline nothing new starts (no run, no re-score, no proposal); what runs may end and be
judged; the experiments left undecided wait for the same command. Real parts: the toy task,
the real controller (CLI for the wall clock), the protected re-score wrapped to count and
to sleep (overnight.testing.toy.counted_toy).
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from overnight.judges.noise import NoiseSettings
from overnight.night.config import RunConfig
from overnight.night.controller import Controller
from overnight.night.tags import open_journal
from overnight.records import ExpStatus
from overnight.testing.nights import Fixed
from overnight.testing.toy import SLOW, counted_toy, edited_train, rescored

CLI = [sys.executable, "-m", "overnight"]


def test_the_deadline_leaves_the_baseline_undecided_and_resume_finishes_it(tmp_path):
    """5 baseline seeds of ~2 s each and 3 s of night: the run in flight ends, nothing more
    starts, the night ends well before the 5 are done; the same command then finishes them."""
    root = counted_toy(tmp_path / "toy", tmp_path / "count", noise="0.002", slow_baseline=1.5)
    cmd = [*CLI, "run", str(root), "--tag", "t", "--quiet", "--judge", "noise", "--baseline-seeds", "5"]
    t0 = time.monotonic()
    proc = subprocess.run([*cmd, "--hours", f"{3 / 3600}"], capture_output=True, text=True, timeout=120)
    wall = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "--hours is up: " in proc.stdout and "left undecided (#1" in proc.stdout  # (a knob search's #2 too)
    assert "the same command resumes them" in proc.stdout  # a whole line (no break at 80 columns)
    assert wall < 3 + 2 * 4 + 5  # the deadline, a run in flight (slept 1.5 s, ~4 s in all), exit
    j = open_journal(root)
    base = j.experiments("t")[0]
    measured = [r.value for r in base.runs if r.status == "ok"]
    assert not base.status.final and 1 <= len(measured) < 5
    j.close()
    # What a newcomer reads of a night stopped during its baseline: no None, no Python warning,
    # the baseline as far as it was measured, and that nothing was kept.
    status = subprocess.run([*CLI, "status", str(root), "--tag", "t"], capture_output=True, text=True, timeout=60)
    report = subprocess.run([*CLI, "report", str(root), "--tag", "t"], capture_output=True, text=True, timeout=120)
    as_json = subprocess.run(
        [*CLI, "status", str(root), "--tag", "t", "--json"], capture_output=True, text=True, timeout=60
    )
    md = (root / ".overnight" / "t" / "report.md").read_text()
    for out in (status, report, as_json):
        assert out.returncode == 0 and "Warning" not in out.stderr, out.stderr
    for text in (status.stdout, md, proc.stdout):
        assert "None" not in text and "still measuring" in text and "none kept yet" in text, text
    import json

    d = json.loads(as_json.stdout)
    assert d["baseline"]["value"] == pytest.approx(sum(measured) / len(measured)) and d["baseline"]["measuring"]
    done = subprocess.run([*cmd, "--experiments", "1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    j = open_journal(root)
    base = j.experiments("t")[0]
    assert base.status == ExpStatus.KEPT and len([r for r in base.runs if r.status == "ok"]) == 5
    j.close()


def test_a_keep_reached_after_the_deadline_is_not_re_scored(tmp_path):
    """The winner's run ends after the deadline: its keep would need a 20 s re-score, which is
    not started; the night ends at once, the winner undecided and not re-scored. The same
    command (without --hours) re-scores and keeps it. (The baseline's check is quick: it holds
    the one slot before the winner runs.)"""
    count = tmp_path / "count"
    root = counted_toy(tmp_path / "toy", count, sleep=20, noise="0", check_sleep=0)
    better = edited_train(root, 'ACTIVATION = "relu"', 'ACTIVATION = "gelu"')
    slow_winner = better.replace("from evaluate", SLOW.format(6), 1)
    c = Controller(root, RunConfig(tag="t", proposer="random", judge="greedy", experiments=2, hours=4 / 3600))
    c.proposer = Fixed([slow_winner])
    t0 = time.monotonic()
    c.run()
    wall = time.monotonic() - t0
    base, win = c.journal.experiments("t")
    assert base.status == ExpStatus.KEPT and [r.status for r in win.runs] == ["ok"]
    assert not win.status.final and win.runs[0].rescored is None
    assert [d for d in rescored(count) if not d.startswith("1-")] == []  # the keep's re-score was not started
    # (the baseline's check of the task's re-score ran first, in the slot, before the winner)
    assert wall < 4 + 6 + 5 + 5, wall  # not the 20 s re-score (it would end past 26 s)
    c.journal.close()
    count.write_text("")
    spec = root / "overnight.toml"  # a quick re-score now (the task's files are the user's to change)
    spec.write_text(spec.read_text().replace("sleep 20", "sleep 0"))
    again = Controller(root, RunConfig(tag="t", proposer="random", judge="greedy", experiments=2))
    again.run()
    _, win = again.journal.experiments("t")
    assert win.status == ExpStatus.KEPT and win.runs[0].rescored == win.runs[0].value
    assert rescored(count) == [f"{win.id}-{win.runs[0].id}"]
    again.journal.close()


def test_a_re_score_in_flight_at_the_deadline_ends_within_the_grace(tmp_path):
    """A keep's re-score started before the deadline (8 s) and ending after it (it sleeps 14 s):
    within one run's timeout (30 s), so the night waits for it and the keep lands; nothing is
    proposed after the deadline, and the night ends right after the keep. (The baseline's check
    is quick: it holds the one slot before the winner runs.)"""
    count = tmp_path / "count"
    root = counted_toy(tmp_path / "toy", count, sleep=14, noise="0", check_sleep=0)
    better = edited_train(root, 'ACTIVATION = "relu"', 'ACTIVATION = "gelu"')
    t0 = time.time()
    c = Controller(root, RunConfig(tag="t", proposer="random", judge="greedy", experiments=3, hours=8 / 3600))
    c.proposer = Fixed([better, better])
    c.run()
    wall = time.time() - t0
    h = c.journal.experiments("t")
    assert h[1].status == ExpStatus.KEPT and h[1].runs[0].rescored is not None
    assert h[1].runs[0].ended < t0 + 8 < h[1].decided  # the re-score was in flight at the deadline
    assert len(h) == 2  # nothing proposed after the deadline
    assert wall < 8 + 30, wall
    assert wall < h[1].decided - t0 + 5  # and the night ended right after the keep
    c.journal.close()


def test_the_noise_judge_at_the_deadline_starts_no_confirmation_run(tmp_path):
    """A promising candidate whose confirmation runs would start after the deadline: none does."""
    root = counted_toy(tmp_path / "toy", tmp_path / "count", noise="0.002")
    better = edited_train(root, 'ACTIVATION = "relu"', 'ACTIVATION = "gelu"')
    slow = better.replace("from evaluate", SLOW.format(6), 1)
    t0 = time.time()
    c = Controller(
        root,
        RunConfig(
            tag="t",
            proposer="random",
            judge="noise",
            experiments=2,
            hours=6 / 3600,
            noise=NoiseSettings(baseline_runs=2),
            screen=False,  # the confirmation runs of a full-budget first run are what is counted
        ),
    )
    c.proposer = Fixed([slow])
    c.run()
    base, cand = c.journal.experiments("t")
    assert base.status == ExpStatus.KEPT and cand.runs and cand.runs[0].ended > t0 + 6
    assert not [r for r in cand.runs + base.runs if r.started > t0 + 6]  # nothing started after the deadline
    c.journal.close()
