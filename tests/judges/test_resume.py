"""kill -9 in the middle of a confirmation: no replicate run is lost or double-counted.

A real `python -m overnight run --quiet` on the toy task (each run sleeps 1 s), with the
`agent` proposer driving a tiny script that makes one clearly better change. The controller
is killed twice: while the incumbent is being topped up with replicates for the comparison,
and while the candidate's confirmation run is in flight. Each time the same command resumes.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from overnight.judges.noise import NoiseJudge, NoiseSettings
from overnight.night.tags import open_journal
from overnight.records import ExpStatus
from overnight.task_load import load_task
from overnight.testing.nights import night_seeds
from overnight.testing.procs import CLI, kill_controller_when
from overnight.testing.toy import write_toy

AGENT = """\
import os, pathlib
p = pathlib.Path("train.py")
p.write_text(p.read_text().replace('ACTIVATION = "relu"', 'ACTIVATION = "gelu"'))
pathlib.Path(os.environ["OVERNIGHT_DESCRIPTION_FILE"]).write_text("gelu instead of relu")
"""


def _cmd(root: Path, agent: Path) -> list[str]:
    return [
        *CLI,
        "run",
        str(root),
        "--quiet",
        "--tag",
        "night",
        "--experiments",
        "2",
        "--judge",
        "noise",
        "--baseline-seeds",
        "2",
        "--proposer",
        "agent",
        "--agent-cmd",
        f"{sys.executable} {agent}",
    ]


def _runs(db: Path) -> list[tuple[int, str]]:
    con = sqlite3.connect(db, timeout=10)
    try:
        return con.execute("SELECT experiment_id, status FROM runs ORDER BY id").fetchall()
    except sqlite3.OperationalError:  # the schema is not there yet
        return []
    finally:
        con.close()


def _kill_when(proc: subprocess.Popen, root: Path, ready, timeout: float = 90) -> None:
    """SIGKILL the controller once `ready(runs)` holds for the journal's runs."""
    db = root / ".overnight" / "journal.db"
    kill_controller_when(proc, lambda: db.exists() and ready(_runs(db)), lambda: _runs(db), timeout)


def _ok_and_running(runs, exp_id: int, min_ok: int = 1) -> bool:
    mine = [s for e, s in runs if e == exp_id]
    return mine.count("ok") >= min_ok and "running" in mine


def test_kill_during_confirmation_loses_and_double_counts_nothing(tmp_path):
    root = write_toy(tmp_path / "toy", env={"TOY_SLEEP": "1"})
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)

    # 1. Killed while #2's confirmation run is in flight (its screen run and first full run done).
    proc = subprocess.Popen(_cmd(root, agent), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _kill_when(proc, root, lambda runs: _ok_and_running(runs, 2, min_ok=2))
    finally:
        if proc.poll() is None:
            proc.kill()
    j = open_journal(root)
    assert j.experiment(1).status == ExpStatus.KEPT and j.experiment(2).status == ExpStatus.RUNNING
    j.close()

    # 2. Killed while the baseline (the incumbent) runs the partner #2's third seed needs (its
    # 2 full seeds and 4 screen seeds done).
    proc = subprocess.Popen(_cmd(root, agent), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _kill_when(proc, root, lambda runs: runs.count((2, "ok")) >= 4 and _ok_and_running(runs, 1, min_ok=6))
    finally:
        if proc.poll() is None:
            proc.kill()

    # 3. The same command finishes the night.
    done = subprocess.run(_cmd(root, agent), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resuming night: 1 interrupted run(s) will run again" in done.stdout

    j = open_journal(root)
    h = j.experiments("night")
    assert [e.id for e in h] == [1, 2] and all(e.status == ExpStatus.KEPT for e in h)
    for e in h:
        assert {r.status for r in e.runs} <= {"ok", "interrupted"}
        ok = [r for r in e.runs if r.status == "ok"]
        # Seeds of the ok replicates: distinct, the night's first ones in order, whatever was killed.
        assert [r.seed for r in ok] == night_seeds(j, "night", len(ok)), (e.id, [(r.seed, r.status) for r in e.runs])
        bad = [r for r in e.runs if r.status == "interrupted"]
        assert len(bad) == 1, (e.id, [(r.seed, r.status) for r in e.runs])
        # The interrupted replicate ran again, with the same seed, after it.
        again = [r for r in ok if r.seed == bad[0].seed]
        assert len(again) == 1 and again[0].id > bad[0].id
    base, cand = h
    # Paired on its own pairs: the baseline's 2 seeds and the partners the candidate's seeds needed.
    assert len(cand.ok_values) >= 3 and {r.seed for r in cand.runs} <= {r.seed for r in base.runs}
    assert "gelu" in cand.edits["train.py"] and cand.description == "gelu instead of relu"

    # The decision is what the judge says on the runs the journal holds at the decision time.
    settings = NoiseSettings(**j.tag_info("night")["config"]["noise"])
    assert settings.baseline_runs == 2
    t = cand.decided
    at_t = [replace(e, runs=[r for r in e.runs if r.ended is not None and r.ended <= t]) for e in h]
    verdict = NoiseJudge(settings).judge(at_t[1], at_t[0], load_task(root).metric, at_t)
    assert verdict.action == "keep" and verdict.reason == cand.reason and verdict.value == cand.value
    assert f"over {len(cand.ok_values)} pair(s) with #1" in cand.reason
    assert len(j.events("night", "resume")) == 2
    j.close()
