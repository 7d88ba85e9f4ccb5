"""Local slots on real parts: N toy runs at once (real subprocesses, git worktrees, SQLite),
GPU pinning as the task sees it, the stale rule, distinct parallel Optuna proposals, and a
kill -9 with several slots in flight."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from pathlib import Path

import optuna
import psutil
import pytest

from overnight import knobs
from overnight.executors.local import THREAD_VARS, LocalExecutor, detect_gpus, plan_slots
from overnight.judges.noise import NoiseSettings
from overnight.night.config import RunConfig
from overnight.night.controller import Controller
from overnight.night.tags import open_journal
from overnight.proposers import Proposal
from overnight.proposers.optuna import OptunaProposer
from overnight.records import ExpStatus
from overnight.testing.executor_contract import ExecutorContract
from overnight.testing.gitutil import check_consistent, user_state
from overnight.testing.nights import Scripted
from overnight.testing.procs import CLI
from overnight.testing.toy import write_toy


def max_overlap(runs) -> int:
    """The most runs that were executing at the same instant."""
    edges = sorted([(r.started, 1) for r in runs] + [(r.ended, -1) for r in runs])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def test_n_slots_run_n_experiments_at_once(tmp_path):
    root = write_toy(tmp_path / "toy", env={"TOY_SLEEP": "1"})
    before = user_state(root)
    c = Controller(root, RunConfig(tag="t", proposer="optuna", judge="greedy", experiments=10, slots=3))
    c.run()
    h = c.journal.experiments("t")
    runs = [r for e in h for r in e.runs]
    assert max_overlap(runs) == 3
    assert {r.slot for r in runs} == {"0", "1", "2"} and {r.node for r in runs} == {"local"}
    check_consistent(root, "t", h)
    proposed = [e for e in h if "rebased_from" not in e.params]
    assert len(proposed) == 10 and sum(e.parent_id is None for e in h) == 1
    # Parallel asks saw each other (local moves in flight, TPE's constant liar): no
    # configuration twice (a local move's params name one knob: compare whole files).
    configs = [e.edits["train.py"] for e in proposed[1:]]
    assert len(set(configs)) == len(configs)
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{root / '.overnight' / 'optuna.db'}")
    assert optuna.trial.TrialState.RUNNING not in [tr.state for tr in study.trials]
    assert user_state(root) == before
    slots = c.journal.events("t", "slots")
    assert json.loads(slots[-1]["message"])["slots"][2]["slot"] == "2"


def test_parallel_optuna_asks_are_distinct(toy_repo):
    """Four asks before any tell, as four free slots do: four different configurations."""
    c = Controller(toy_repo, RunConfig(tag="t", judge="greedy", experiments=1))
    c.run()
    ctx = c.context(c.journal.experiments("t"))
    p = OptunaProposer()
    asked = [p.propose(ctx) for _ in range(4)]
    assert len({json.dumps(a.params, sort_keys=True, default=str) for a in asked}) == 4
    assert len({a.edits["train.py"] for a in asked}) == 4


def test_gpu_pinning_is_seen_by_the_task(task_repo):
    train = """\
        import os, time
        from evaluate import report
        time.sleep(0.5)
        print("cuda=" + os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))
        print("omp=" + os.environ.get("OMP_NUM_THREADS", "unset"))
        report(score=1.0 + int(os.environ["OVERNIGHT_SEED"]) % 7 / 100)
    """
    root = task_repo(train)
    c = Controller(root, RunConfig(tag="t", proposer="random", judge="noise", experiments=1, slots=2, gpus=("3", "5")))
    c.run()
    runs = c.journal.experiments("t")[0].runs  # the baseline's seeds, 2 at a time
    assert len(runs) == NoiseSettings().baseline_runs and max_overlap(runs) == 2
    pinned = {"0": "3", "1": "5"}
    for r in runs:
        log = Path(r.log_path).read_text()
        assert f"cuda={pinned[r.slot]}" in log, (r.slot, log)
        assert f"omp={max(1, (__import__('os').cpu_count() or 1) // 2)}" in log


def test_plan_slots(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,7")
    assert detect_gpus() == ["2", "7"]
    slots = plan_slots(None, None, cpus=8)
    assert [(s.name, s.gpu, s.env["CUDA_VISIBLE_DEVICES"], s.env["OMP_NUM_THREADS"]) for s in slots] == [
        ("0", "2", "2", "4"),
        ("1", "7", "7", "4"),
    ]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert detect_gpus() == []
    one = plan_slots(None, None, cpus=8)
    assert len(one) == 1 and one[0].env == {}  # one CPU slot: the task's own thread defaults
    four = plan_slots(4, None, cpus=2)
    assert [s.env[v] for s in four for v in THREAD_VARS] == ["1"] * 12 and four[0].gpu is None
    assert [s.gpu for s in plan_slots(3, ("0",), cpus=2)] == ["0", "0", "0"]  # asked to share


def test_stale_candidates_follow_the_rule(tmp_path):
    """Two slots, deterministic toy (no noise), greedy judge. #2 (gelu) and #3 (norm, slow)
    start together on #1; #2 is kept while #3 runs. #4 (silu) runs on #2 (proposed on #1 while
    #2 ran, it is rebased onto #2 before it starts: its ACTIVATION line wins) and is measured:
    worse than gelu, discarded. #3 beats its parent #1 but is stale: discarded, its edit rebased onto
    #2 as #5, measured, and kept. Nothing kept is dropped: the branch is #1 -> #2 -> #5."""
    root = write_toy(tmp_path / "toy", env={"TOY_NOISE": "0"})

    def set_knobs(slow=0.0, **values):
        def step(ctx):
            src = knobs.rewrite(ctx.incumbent_files["train.py"], values)
            if slow:
                src = src.replace("from evaluate", f"import time\ntime.sleep({slow})\nfrom evaluate")
            return Proposal(f"set {values}", {"train.py": src}, dict(values))

        return step

    c = Controller(root, RunConfig(tag="t", judge="greedy", experiments=4, slots=2))
    c.proposer = Scripted(
        set_knobs(slow=1, ACTIVATION="gelu"), set_knobs(slow=4, USE_NORM=True), set_knobs(ACTIVATION="silu")
    )
    c.run()
    h = {e.id: e for e in c.journal.experiments("t")}
    assert [h[i].status for i in range(1, 6)] == [
        ExpStatus.KEPT,
        ExpStatus.KEPT,
        ExpStatus.DISCARDED,
        ExpStatus.DISCARDED,
        ExpStatus.KEPT,
    ], [h[i].reason for i in h]
    assert h[3].parent_id == 1 and "stale: #2 was kept while it ran" in h[3].reason
    assert "goes on as #5, rebased onto #2" in h[3].reason and h[3].value < h[1].value
    # #4 is proposed while #2's keep is re-scored; since a re-score holds its slot, the proposal
    # may come after the keep (made on #2) or before it (rebased onto #2 before it starts).
    assert h[4].parent_id == 2 and h[4].description in (
        "set {'ACTIVATION': 'silu'}",
        "set {'ACTIVATION': 'silu'} (rebased onto #2)",
    )
    assert 'ACTIVATION = "silu"' in h[4].edits["train.py"] and len(h[4].runs) == 1
    five = h[5]
    assert five.parent_id == 2 and five.params["rebased_from"] == 3 and "_trial" not in five.params
    src = five.edits["train.py"]
    assert (
        'ACTIVATION = "gelu"' in src
        and "USE_NORM = True" in src
        and "time.sleep(4)" in src
        and "time.sleep(1)" not in src
    )
    assert five.value == pytest.approx(h[2].value - 0.01)
    check_consistent(root, "t", list(h.values()))


# --- kill -9 with several slots in flight ------------------------------------------------------


def _cmd(root, n):
    return [
        *CLI,
        "run",
        str(root),
        "--experiments",
        str(n),
        "--quiet",
        "--tag",
        "night",
        "--proposer",
        "optuna",
        "--judge",
        "greedy",
        "--slots",
        "3",
    ]


def _running(db) -> int:
    con = sqlite3.connect(db, timeout=10)
    try:
        return con.execute("SELECT COUNT(*) FROM runs WHERE status='running'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()


def test_resume_after_sigkill_with_three_slots_in_flight(tmp_path):
    root = write_toy(tmp_path / "toy", env={"TOY_SLEEP": "1.5"})
    db = root / ".overnight" / "journal.db"
    proc = subprocess.Popen(_cmd(root, 8), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (db.exists() and _running(db) == 3 and open_journal(root).experiments("night")[-1].id >= 3):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
            time.sleep(0.05)
        time.sleep(0.3)  # the processes exist
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    # What was in flight at the kill, read from the journal the dead controller left (on a
    # loaded machine a run may finish between the check above and the kill).
    in_flight = _running(db)
    assert in_flight >= 2
    psutil.wait_procs(children, timeout=15)
    again = subprocess.run(_cmd(root, 8), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"resuming night: {in_flight} interrupted run(s) will run again" in again.stdout
    j = open_journal(root)
    h = j.experiments("night")
    check_consistent(root, "night", h)
    lost = [(e, r) for e in h for r in e.runs if r.status == "interrupted"]
    assert len(lost) == in_flight
    for e, r in lost:  # each ran again, with its seed, after it
        assert [x for x in e.runs if x.status == "ok" and x.seed == r.seed and x.id > r.id]
    assert sum("rebased_from" not in e.params for e in h) == 8
    configs = [e.edits["train.py"] for e in h[1:] if "rebased_from" not in e.params]
    assert len(set(configs)) == len(configs)  # a resumed search repeats nothing
    j.close()


class TestLocalContract(ExecutorContract):
    """The executor contract (overnight.testing.executor_contract) on two CPU slots."""

    @pytest.fixture
    def make(self):
        return lambda task: LocalExecutor(task, plan_slots(2, (), cpus=2))
