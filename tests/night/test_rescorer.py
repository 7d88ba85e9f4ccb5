"""The protected re-score runs only before a keep, off the slots, once per counted run, and a
controller killed while it runs re-does it on resume (scheduler.py, rescorer.py).

Real parts: the toy task in a git repository, the real controller (and, for the kill, the real
CLI in a subprocess, SIGKILLed), SQLite. The toy's rescore command is wrapped so that every
re-score appends its run directory to a file first: the count of real re-score processes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from overnight import gitops
from overnight.judges.noise import NoiseSettings
from overnight.night.config import RunConfig
from overnight.night.controller import Controller
from overnight.night.tags import open_journal
from overnight.records import ExpStatus
from overnight.testing.agents import GELU_AGENT
from overnight.testing.nights import Fixed
from overnight.testing.procs import CLI, kill_controller_when
from overnight.testing.toy import (
    SLOW,
    counted_toy,
    edited_train,
    fake_metric,
    overlapping,
    rescored,
    stamped,
    stamped_toy,
)


def test_a_fake_better_metric_is_rescored_once_per_counted_run_and_discarded(tmp_path):
    """The fake varies with the seed (so the noise judge counts every run and confirms it over
    several): the keep verdict comes, every counted run is re-scored exactly once, the first
    disagreement discards it and flags it; the noise estimate leaves its values out."""
    count = tmp_path / "count"
    root = counted_toy(tmp_path / "toy", count)
    fake = fake_metric(root)
    c = Controller(
        root, RunConfig(tag="t", proposer="random", judge="noise", experiments=2, noise=NoiseSettings(baseline_runs=3))
    )
    c.proposer = Fixed([fake])
    c.run()
    base, cheat = c.journal.experiments("t")
    assert base.status == ExpStatus.KEPT
    assert cheat.status == ExpStatus.DISCARDED and "re-scored by protected code" in cheat.reason, cheat.reason
    counted = [r for r in cheat.runs if r.value is not None]
    assert len(counted) >= 2  # confirmed over several runs before the keep verdict
    assert {r.status for r in counted} == {"mismatch"}  # every one disagreed
    mine = [d for d in rescored(count) if d.startswith(f"{cheat.id}-")]
    assert sorted(mine) == sorted(f"{cheat.id}-{r.id}" for r in counted)  # each exactly once
    assert len(c.journal.events("t", "rescore-mismatch")) == len(counted)
    # The baseline is the reference, kept without waiting for re-scores; one of its runs is
    # re-scored once after, as a check of the task's re-score command; with no [heldout] in
    # the toy no keep pairs with its other runs (test_heldout: when one does).
    assert [d for d in rescored(count) if d.startswith("1-")] == [f"1-{base.runs[0].id}"]
    assert [r.rescored is not None for r in base.runs[:3]] == [True, False, False]
    # Paired, the baseline ran on every seed the candidate's pairs needed (no top-up to 5 runs).
    assert {r.seed for r in cheat.runs} <= {r.seed for r in base.runs}
    assert gitops.rev_parse(root, "overnight/t") == base.commit_sha
    c.journal.close()


def test_a_discarded_honest_candidate_is_never_rescored(tmp_path):
    """A worse honest candidate is discarded without a re-score; a better one is re-scored
    (its one run, once) and kept."""
    count = tmp_path / "count"
    root = counted_toy(tmp_path / "toy", count, noise="0")
    worse = edited_train(root, "WIDTH = 64", "WIDTH = 8")
    better = edited_train(root, 'ACTIVATION = "relu"', 'ACTIVATION = "gelu"')
    c = Controller(root, RunConfig(tag="t", proposer="random", judge="greedy", experiments=3))
    c.proposer = Fixed([worse, better])
    c.run()
    base, bad, good = c.journal.experiments("t")
    assert (base.status, bad.status, good.status) == (ExpStatus.KEPT, ExpStatus.DISCARDED, ExpStatus.KEPT)
    assert sorted(rescored(count)) == sorted([f"1-{base.runs[0].id}", f"{good.id}-{good.runs[0].id}"])
    run_dir = root / ".overnight" / "t" / "runs" / f"{bad.id}-{bad.runs[0].id}"
    assert sorted(p.name for p in run_dir.iterdir()) == ["log.txt", "result.json"]
    assert bad.runs[0].rescored is None and good.runs[0].rescored == good.runs[0].value
    assert good.runs[0].summary["rescored"] == good.runs[0].value  # merged into the run's summary
    assert "val_loss" in good.runs[0].summary["printed"]  # what the run itself reported stays
    assert gitops.rev_parse(root, "overnight/t") == good.commit_sha
    assert not c.journal.events("t", "rescore-mismatch")
    c.journal.close()


def test_a_new_candidate_waits_for_the_keep_being_re_scored(tmp_path):
    """Three slots (the baseline's check holds one for its 1.5 s: a re-score takes a slot);
    #2 (gelu, 1 s) wins while #3 (norm, 4 s) runs on, and #2's re-score takes 1.5 s. #4
    (proposed on #1) waits for #2's keep to land rather than start on an incumbent about to be
    replaced (it would be stale at once), though a slot is free: it starts after, rebased onto
    #2. #3 ran on through #2's re-score, and ends stale (the stale rule)."""
    from overnight import knobs

    count = tmp_path / "count"
    root = counted_toy(tmp_path / "toy", count, sleep=1.5, noise="0")
    base = (root / "train.py").read_text()

    def knob(slow: float, **values) -> str:
        src = knobs.rewrite(base, values)
        return src.replace("from evaluate", SLOW.format(slow)) if slow else src

    c = Controller(root, RunConfig(tag="t", proposer="random", judge="greedy", experiments=4, slots=3))
    c.proposer = Fixed([knob(1, ACTIVATION="gelu"), knob(4, USE_NORM=True), knob(0, ACTIVATION="silu")])
    c.run()
    h = {e.id: e for e in c.journal.experiments("t")}
    two, three, four = h[2], h[3], h[4]
    assert two.status == ExpStatus.KEPT and two.runs[0].rescored == two.runs[0].value
    assert two.decided > two.runs[0].ended + 1.5  # the keep landed after the re-score (1.5 s)
    assert four.parent_id == 2 and four.description.endswith("(rebased onto #2)") and len(four.runs) == 1
    assert four.runs[0].started >= two.decided
    assert three.runs[0].started < two.runs[0].ended < two.decided < three.runs[0].ended
    assert "stale: #2 was kept while it ran" in three.reason, three.reason
    assert f"{four.id}-{four.runs[0].id}" not in rescored(count)  # silu loses to gelu: never re-scored
    c.journal.close()


class EarlyFixed(Fixed):
    needs_baseline_result = False  # proposes while the baseline trains, as a knob search does


def test_a_candidate_waiting_for_the_baseline_holds_the_next_one(tmp_path):
    """Two slots; the baseline's run takes 4 s. #2, proposed while the baseline trains, runs
    beside it, ends first and waits to be judged. #3 waits for that judgement (#2 is kept, and
    re-scored) rather than start on the baseline and be stale at once: it runs on #2."""
    count = tmp_path / "count"
    root = counted_toy(tmp_path / "toy", count, sleep=0.5, noise="0", slow_baseline=4)
    fast = SLOW.format(4)
    better = edited_train(root, 'ACTIVATION = "relu"', 'ACTIVATION = "gelu"').replace(fast, "from evaluate")
    other = edited_train(root, "WIDTH = 64", "WIDTH = 8").replace(fast, "from evaluate")
    c = Controller(root, RunConfig(tag="t", proposer="random", judge="greedy", experiments=3, slots=2))
    c.proposer = EarlyFixed([better, other])
    c.run()
    h = c.journal.experiments("t")
    assert len(h) == 3 and not [e.reason for e in h if "stale" in e.reason], [e.reason for e in h]
    base, two, three = h
    assert two.status == ExpStatus.KEPT and two.runs[0].ended < base.runs[0].ended  # it ended first
    assert three.parent_id == two.id and three.runs[0].started >= two.decided
    c.journal.close()


def test_sigkill_during_the_rescore_redoes_it_and_keeps_once(tmp_path):
    """kill -9 of the controller after #2's keep verdict, while its re-score runs: the journal
    holds no keep; the same command re-scores it again and keeps it exactly once."""
    count = tmp_path / "count"
    root = counted_toy(tmp_path / "toy", count, sleep=1.5, noise="0")
    agent = tmp_path / "agent.py"
    agent.write_text(GELU_AGENT)
    cmd = [
        *CLI,
        "run",
        str(root),
        "--quiet",
        "--tag",
        "night",
        "--experiments",
        "2",
        "--judge",
        "greedy",
        "--proposer",
        "agent",
        "--agent-cmd",
        f"{sys.executable} {agent}",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        kill_controller_when(
            proc, lambda: any(d.startswith("2-") for d in rescored(count)), lambda: rescored(count), poll=0.02
        )
    finally:
        if proc.poll() is None:
            proc.kill()
    j = open_journal(root)
    cand = j.experiment(2)
    assert cand.status != ExpStatus.KEPT and [r.status for r in cand.runs] == ["ok"]
    assert cand.runs[0].rescored is None
    assert gitops.rev_parse(root, "overnight/night") == j.experiment(1).commit_sha
    j.close()

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    j = open_journal(root)
    base, cand = j.experiments("night")
    assert base.status == ExpStatus.KEPT and cand.status == ExpStatus.KEPT, (cand.status, cand.reason)
    assert [r.status for r in cand.runs] == ["ok"] and cand.runs[0].rescored == cand.runs[0].value
    run = f"2-{cand.runs[0].id}"
    assert rescored(count).count(run) == 2  # the killed one, and the one the resumed controller did
    assert gitops.rev_parse(root, "overnight/night") == cand.commit_sha
    rows = (root / ".overnight" / "night" / "results.tsv").read_text().splitlines()
    assert [r.split("\t")[3] for r in rows[1:]] == ["keep", "keep"]
    assert len(gitops.git(root, "worktree", "list").splitlines()) == 1
    j.close()


def test_noise_leaves_out_an_experiment_with_a_mismatched_run():
    """One run of a cheat failed its re-score; its other runs' values (still `ok`) must not
    widen or narrow the noise estimate."""
    from overnight.judges.noise import noise_of
    from overnight.records import Experiment, Run

    def exp(i, runs):
        return Experiment(
            i,
            "t",
            None,
            "c",
            "c",
            {},
            "",
            "d",
            "p",
            {},
            ExpStatus.DISCARDED,
            None,
            None,
            0.0,
            0.0,
            runs=[Run(k, i, seed, status, 0.0, value=v) for k, (seed, status, v) in enumerate(runs)],
        )

    honest = exp(1, [(0, "ok", 1.00), (1, "ok", 1.01), (2, "ok", 0.99)])
    cheat = exp(2, [(0, "ok", 0.5), (1, "ok", 0.1), (2, "mismatch", 0.9)])
    assert noise_of([honest, cheat]) == noise_of([honest])


def test_an_older_journal_gains_the_rescored_column(tmp_path):
    """A journal written before runs.rescored existed (every run re-scored inside it, the
    value in its summary) opens with the column added and filled: nothing re-scored twice."""
    import sqlite3

    from overnight.journal import SCHEMA, Journal

    db = tmp_path / "journal.db"
    con = sqlite3.connect(db)
    # The runs table as it was: without rescored, budget and screen (added since, in that order).
    head, tail = SCHEMA.split("    rescored REAL,")
    con.executescript(head.rstrip().rstrip(",") + "\n);" + tail.split("\n);", 1)[1])
    assert not {"rescored", "budget", "screen"} & {r[1] for r in con.execute("PRAGMA table_info(runs)")}
    con.execute("INSERT INTO tags VALUES ('t', 'c', 0, '{}')")
    con.execute(
        "INSERT INTO experiments (tag, base_commit, edits, description, proposer, params, status, created,"
        " updated) VALUES ('t', 'c', '{}', 'baseline', 'baseline', '{}', 'kept', 0, 0)"
    )
    con.execute(
        "INSERT INTO runs (experiment_id, seed, status, started, value, summary) VALUES"
        " (1, 0, 'ok', 0, 1.25, '{\"rescored\": 1.25}'), (1, 1, 'ok', 0, 1.5, '{}')"
    )
    con.commit()
    con.close()
    j = Journal(db)
    assert [r.rescored for r in j.experiment(1).runs] == [1.25, None]
    # ... and they were full-budget runs: none is read as a screen run.
    assert [(r.budget, r.screen) for r in j.experiment(1).runs] == [(None, False)] * 2 and not j.experiment(1).screens
    j.close()
    Journal(db).close()  # opening again changes nothing


def test_a_broken_rescore_command_stops_the_night_at_the_baseline(tmp_path):
    """The baseline is kept without waiting for re-scores, but one of its runs is re-scored
    right after: a task whose re-score cannot agree stops the night there, in one line, instead
    of discarding every winner of the night as a cheat."""
    import pytest

    from overnight.errors import OvernightError

    count = tmp_path / "count"
    root = counted_toy(tmp_path / "toy", count, noise="0")
    spec = root / "overnight.toml"
    spec.write_text(spec.read_text().replace("python evaluate.py --rescore", "exit 1"))
    gitops.git(root, "commit", "-qam", "a broken re-score")
    c = Controller(root, RunConfig(tag="t", proposer="random", judge="greedy", experiments=5))
    with pytest.raises(OvernightError) as exc:
        c.run()
    assert "the baseline's re-score failed" in str(exc.value) and "fix the task's rescore command" in str(exc.value)
    base = c.journal.experiments("t")[0]
    assert base.status != ExpStatus.KEPT and rescored(count) == [f"1-{base.runs[0].id}"]
    assert not [e for e in c.journal.experiments("t") if e.status == ExpStatus.KEPT]
    c.journal.close()


@pytest.mark.parametrize("slots, gpus", [(1, None), (2, ("0", "1"))], ids=["one-slot", "two-gpu-slots"])
def test_no_re_score_overlaps_a_timed_run_on_its_device(tmp_path, slots, gpus):
    """Every training process and every re-score appends (start, end, device) to a file of the
    test's: three winners and the baseline's check make four re-scores (1 s each), and none of
    them runs beside a training run on the same device: a re-score takes a slot as a run does
    (the slot's pinning with it: on two slots pinned to devices "0" and "1", the device of the
    slot it took), and the scheduler starts no run there meanwhile. With one slot the baseline's
    check goes first, before the first candidate's run (re-scores come before new runs)."""
    stamps = tmp_path / "stamps.jsonl"
    root = stamped_toy(tmp_path / "toy", stamps)
    gelu = edited_train(root, 'ACTIVATION = "relu"', 'ACTIVATION = "gelu"')
    wide = gelu.replace("WIDTH = 64", "WIDTH = 128")
    better = [gelu, wide, wide.replace("USE_NORM = False", "USE_NORM = True")]  # each on the one before
    c = Controller(root, RunConfig(tag="t", proposer="random", judge="greedy", experiments=4, slots=slots, gpus=gpus))
    c.proposer = Fixed(better)
    c.run()
    h = c.journal.experiments("t")
    seen = stamped(stamps)
    rescores = [s for s in seen if s["kind"] == "rescore"]
    assert sum(e.status == ExpStatus.KEPT for e in h) >= 2 and len(rescores) >= 2, [e.reason for e in h]
    assert len([s for s in seen if s["kind"] == "train"]) == sum(len(e.runs) for e in h)
    if gpus:
        assert {s["gpu"] for s in seen} <= set(gpus)  # each process ran pinned to its slot's device
    assert overlapping(seen, device=lambda s: s["gpu"]) == []
    if slots == 1:
        assert [e.status for e in h] == [ExpStatus.KEPT] * 4
        assert len(rescores) == 4  # the baseline's check, then each winner's run
        check = min(rescores, key=lambda s: s["start"])
        assert Path(check["dir"]).name == f"1-{h[0].runs[0].id}"
        first = next(s for s in seen if Path(s["dir"]).name == f"2-{h[1].runs[0].id}" and s["kind"] == "train")
        assert check["end"] <= first["start"]
    c.journal.close()
