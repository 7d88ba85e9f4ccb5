"""One run (overnight.run.execute.execute) of real candidate programs in real worktrees."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from overnight import gitops
from overnight.records import RunRequest, RunStatus
from overnight.run.execute import execute
from overnight.task import file_hash
from overnight.task_load import load_task
from overnight.testing.gitutil import git_out
from overnight.testing.toy import DEFAULT_TOML

# the runner's own mechanics; run/test_sandbox.py runs it sandboxed
pytestmark = pytest.mark.usefixtures("unsandboxed")


def request(root: Path, tmp_path: Path, commit: str | None = None, name: str = "r", **kw) -> RunRequest:
    commit = commit or gitops.head(root)
    task = load_task(root)
    hashes = kw.pop("protected_hashes", None)
    if hashes is None:
        hashes = {p: file_hash(gitops.read_file(root, gitops.head(root), p)) for p in task.protected}
    return RunRequest(
        commit=commit,
        seed=kw.pop("seed", 0),
        run_dir=tmp_path / "runs" / name,
        worktree=root / ".overnight" / "worktrees" / name,
        protected_hashes=hashes,
        **kw,
    )


def run(root, tmp_path, **kw):
    task = load_task(root)
    req = request(root, tmp_path, **kw)
    res = execute(task, req)
    # Whatever happened, the worktree is gone and git forgot it.
    assert not req.worktree.exists()
    assert len(git_out(root, "worktree", "list").splitlines()) == 1
    return res


def test_ok_reads_metric_from_result_file(task_repo, tmp_path):
    root = task_repo("""
        import os
        from evaluate import report
        print("step 1")
        print("---")
        print("score: 0.25")
        print("training_seconds: 0.1")
        report(score=0.25 + int(os.environ["OVERNIGHT_SEED"]), training_seconds=0.5)
    """)
    res = run(root, tmp_path, seed=3)
    assert res.status == RunStatus.OK, res.error
    assert res.value == 3.25  # the seed reached the program
    assert res.exit_code == 0
    assert res.training_seconds == 0.5  # the result file beats the printed summary
    assert res.printed == {"score": 0.25, "training_seconds": 0.1}
    assert set(res.summary) == {"cpu_seconds"}  # the harness's own facts only: its CPU time
    assert 0 < res.summary["cpu_seconds"] < 10 * res.wall_seconds
    assert 0 < res.wall_seconds < 10
    assert Path(res.log_path).read_text().startswith("step 1\n")
    assert "score: 0.25" in res.log_tail


def test_environment_given_to_the_command(task_repo, tmp_path):
    root = task_repo(
        """
        import os
        from evaluate import report
        assert os.environ["OVERNIGHT_BUDGET"] == "1", os.environ["OVERNIGHT_BUDGET"]
        assert os.environ["EXTRA"] == "yes"
        assert os.environ["FROM_TOML"] == "7"
        assert os.path.basename(os.getcwd()) == "r"  # runs inside its own worktree
        report(score=1.0)
    """,
        toml=DEFAULT_ENV_TOML,
    )
    res = run(root, tmp_path, extra_env={"EXTRA": "yes"})
    assert res.status == RunStatus.OK, res.log_tail


@pytest.mark.parametrize(
    "line, env, clock, policy",
    [
        ("", "", "wall", "unset"),
        ('clock = "cpu"\n', "", "cpu", "PASSIVE"),
        ('clock = "cpu"\n', 'OMP_WAIT_POLICY = "ACTIVE"\n', "cpu", "ACTIVE"),
        ('clock = "steps"\n', "", "steps", "ACTIVE"),
    ],
)
def test_the_task_clock_reaches_the_run(task_repo, tmp_path, monkeypatch, line, env, clock, policy):
    # [task] clock reaches the command as OVERNIGHT_CLOCK, the default too (a task's own train.py
    # needs no default of its own); under the cpu clock OpenMP's threads wait passively, unless
    # [task.env] says otherwise. The run reports what it saw.
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    root = task_repo(
        """
        import json, os
        from evaluate import report
        print(json.dumps([os.environ["OVERNIGHT_CLOCK"], os.environ.get("OMP_WAIT_POLICY", "unset")]))
        report(score=1.0)
    """,
        toml=DEFAULT_ENV_TOML.replace("budget = 1\n", f"budget = 1\n{line}").replace("FROM_TOML = 7\n", env),
    )
    assert load_task(root).clock == clock
    res = run(root, tmp_path)
    assert res.status == RunStatus.OK, res.log_tail
    assert json.loads(Path(res.log_path).read_text().splitlines()[0]) == [clock, policy]


def test_the_steps_clock_costs_travel_both_ways(task_repo, tmp_path):
    """A request's costs reach the command (OVERNIGHT_COST, OVERNIGHT_COST_REF: seconds per
    token); the budget's figures the protected code writes come back in the run's summary."""
    root = task_repo("""
        import json, os
        from evaluate import report
        print(json.dumps([os.environ.get("OVERNIGHT_COST"), os.environ.get("OVERNIGHT_COST_REF")]))
        report(score=1.0, clock="steps", cost=6e-05, cost_ref=5.5e-05, measured_cost=6.1e-05,
               measured_seconds=0.9, num_steps=12)
    """)
    res = run(root, tmp_path, cost=6e-05, cost_ref=5.5e-05)
    assert res.status == RunStatus.OK, res.log_tail
    assert json.loads(Path(res.log_path).read_text().splitlines()[0]) == ["6e-05", "5.5e-05"]
    assert {k: res.summary[k] for k in ("clock", "cost", "cost_ref", "measured_cost", "measured_seconds")} == {
        "clock": "steps",
        "cost": 6e-05,
        "cost_ref": 5.5e-05,
        "measured_cost": 6.1e-05,
        "measured_seconds": 0.9,
    }
    unset = run(root, tmp_path, name="unset")  # no cost known yet: neither variable is set
    assert json.loads(Path(unset.log_path).read_text().splitlines()[0]) == [None, None]


def test_a_run_that_measured_more_than_its_budget_is_over_budget(task_repo, tmp_path):
    """Under the steps clock a run's charged seconds are its tokens at its commit's cost; what
    it measured itself (measured_seconds) tells a run that did more per step than the first
    run of its commit did, which set the cost: over budget, whatever its metric."""
    root = task_repo("""
        from evaluate import report
        report(score=0.1, training_seconds=1.0, measured_seconds=3.2)
    """)
    res = run(root, tmp_path)  # budget 1: limit 1 * 2.0 + 1 = 3.0 s
    assert res.status == RunStatus.OVER_BUDGET and res.value == 0.1
    assert "trained 3.2 s by its own measure" in res.error and "limits.measured_tolerance" in res.error


DEFAULT_ENV_TOML = """\
[task]
command = "{python} train.py"
editable = ["train.py"]
protected = ["evaluate.py"]
budget = 1

[task.env]
FROM_TOML = 7

[metric]
name = "score"
"""


def test_crash_keeps_the_traceback(task_repo, tmp_path):
    root = task_repo("""
        from evaluate import report
        report(score=0.1)  # a result written before the crash must not count
        def step():
            raise RuntimeError("boom at step 7")
        step()
    """)
    res = run(root, tmp_path)
    assert res.status == RunStatus.CRASH
    assert res.exit_code == 1
    assert res.value is None
    assert "Traceback" in res.log_tail and "RuntimeError: boom at step 7" in res.log_tail
    assert "exit code 1" in res.error


def test_hang_is_killed_with_its_whole_process_group(task_repo, tmp_path):
    pidfile = tmp_path / "pids"
    root = task_repo(
        f"""
        import os, signal, subprocess, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a stubborn candidate ignores SIGTERM
        child = subprocess.Popen(["sleep", "1000"])
        with open({str(pidfile)!r}, "w") as f:
            f.write(f"{{os.getpid()}} {{child.pid}}")
        while True:
            time.sleep(1)
    """,
        toml=DEFAULT_TOML_FAST_TIMEOUT,
    )
    start = time.monotonic()
    res = run(root, tmp_path)
    elapsed = time.monotonic() - start
    assert res.status == RunStatus.TIMEOUT
    assert "timeout" in res.error
    # Killed at the 2 s timeout, after at most the SIGTERM grace period, not at sleep's 1000 s.
    assert 2 <= res.wall_seconds and elapsed < 2 + 3 + 3
    pids = [int(p) for p in pidfile.read_text().split()]
    assert len(pids) == 2
    for pid in pids:
        assert _dead(pid), f"process {pid} survived the timeout"


DEFAULT_TOML_FAST_TIMEOUT = """\
[task]
command = "{python} train.py"
editable = ["train.py"]
protected = ["evaluate.py"]
budget = 0.5
timeout = 2

[metric]
name = "score"
"""


def _dead(pid: int, wait: float = 3.0) -> bool:
    """Gone, or a zombie waiting for init to reap it (it holds no memory and runs nothing)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def test_children_left_behind_by_a_clean_exit_are_swept(task_repo, tmp_path):
    pidfile = tmp_path / "pid"
    root = task_repo(f"""
        import subprocess
        from evaluate import report
        child = subprocess.Popen(["sleep", "1000"])
        open({str(pidfile)!r}, "w").write(str(child.pid))
        report(score=1.0)
    """)
    res = run(root, tmp_path)
    assert res.status == RunStatus.OK
    assert _dead(int(pidfile.read_text()))


def test_stop_event_interrupts(task_repo, tmp_path):
    import threading

    root = task_repo("""
        import time
        time.sleep(1000)
    """)
    stop = threading.Event()
    timer = threading.Timer(0.5, stop.set)
    timer.start()
    try:
        res = execute(load_task(root), request(root, tmp_path), stop=stop)
    finally:
        timer.cancel()
    assert res.status == RunStatus.INTERRUPTED
    assert res.wall_seconds < 5


@pytest.mark.parametrize(
    "body,needle",
    [
        ("report(score=float('nan'))", "not finite"),
        ("report(score=float('inf'))", "not finite"),
        ("report(score='fast')", "not a number"),
        ("report(other=1.0)", "no 'score'"),
        ("pass", "no result file"),
        ("open(os.environ['OVERNIGHT_RESULT'], 'w').write('{not json')", "not valid JSON"),
    ],
)
def test_invalid_results(task_repo, tmp_path, body, needle):
    root = task_repo(f"""
        import os
        from evaluate import report
        print("---")
        print("score: 0.5")  # printing a good number does not make a result
        {body}
    """)
    res = run(root, tmp_path)
    assert res.status == RunStatus.INVALID
    assert res.exit_code == 0 and res.value is None
    assert needle in res.error


def test_printed_metric_is_not_trusted(task_repo, tmp_path):
    root = task_repo(
        """
        from evaluate import report
        report(val_bpb=1.5)
        print("---")
        print("val_bpb: 0.0")  # the candidate claims a perfect score
    """,
        toml=DEFAULT_TOML.replace('"score"', '"val_bpb"'),
    )
    res = run(root, tmp_path)
    assert res.status == RunStatus.OK
    assert res.value == 1.5
    assert res.printed["val_bpb"] == 0.0  # shown for display, never judged


def test_stale_result_file_is_not_reused(task_repo, tmp_path):
    root = task_repo("""
        import os
        from evaluate import report
        if os.environ["OVERNIGHT_SEED"] == "0":
            report(score=0.5)
    """)
    assert run(root, tmp_path, seed=0, name="same").value == 0.5
    res = run(root, tmp_path, seed=1, name="same")  # same run_dir, writes nothing
    assert res.status == RunStatus.INVALID and "no result file" in res.error


def test_protected_mismatch_never_runs(task_repo, tmp_path):
    marker = tmp_path / "ran"
    root = task_repo(f"""
        open({str(marker)!r}, "w").write("ran")
        from evaluate import report
        report(score=0.0)
    """)
    base = gitops.head(root)
    hashes = {p: file_hash(gitops.read_file(root, base, p)) for p in load_task(root).protected}
    # A candidate commit that rewrites the protected evaluation to report a perfect score.
    cheat = gitops.make_commit(root, base, {"evaluate.py": "def report(**kw):\n    pass\n"}, "cheat")
    res = run(root, tmp_path, commit=cheat, protected_hashes=hashes)
    assert res.status == RunStatus.INVALID
    assert "evaluate.py" in res.error
    assert not marker.exists()
    # The same candidate without the protected change runs.
    honest = gitops.make_commit(root, base, {"train.py": (root / "train.py").read_text() + "\n"}, "ok")
    assert run(root, tmp_path, commit=honest, protected_hashes=hashes).status == RunStatus.OK
    assert marker.exists()


def test_deleted_protected_file_is_a_mismatch(task_repo, tmp_path):
    root = task_repo("print('hi')\n")
    base = gitops.head(root)
    subprocess.run(["git", "-C", str(root), "rm", "-q", "--cached", "evaluate.py"], check=True)
    sha = subprocess.run(
        ["git", "-C", str(root), "write-tree"], check=True, capture_output=True, text=True
    ).stdout.strip()
    commit = gitops.git(root, "commit-tree", sha, "-p", base, input="drop evaluate").strip()
    subprocess.run(["git", "-C", str(root), "reset", "-q"], check=True)
    res = run(root, tmp_path, commit=commit)
    assert res.status == RunStatus.INVALID and "evaluate.py" in res.error


STDOUT_TOML = """\
[task]
command = "{python} train.py"
editable = ["train.py"]
budget = 1

[metric]
name = "acc"
goal = "maximize"
source = "stdout"
pattern = '^ACC=(\\S+)'
"""


def test_stdout_source_with_pattern(task_repo, tmp_path):
    root = task_repo(
        """
        print("ACC=0.1")
        print("noise ACC=0.9 not at line start")
        print("ACC=0.75")
    """,
        toml=STDOUT_TOML,
    )
    res = run(root, tmp_path)
    assert res.status == RunStatus.OK, res.error
    assert res.value == 0.75  # the last match


def test_stdout_source_without_match(task_repo, tmp_path):
    root = task_repo("print('accuracy unknown')\n", toml=STDOUT_TOML)
    res = run(root, tmp_path)
    assert res.status == RunStatus.INVALID and "pattern" in res.error


def test_peak_memory(task_repo, tmp_path):
    root = task_repo("""
        import time
        from evaluate import report
        block = b"x" * (100 * 2**20)  # touch 100 MB
        time.sleep(0.3)
        report(score=float(len(block) > 0))
    """)
    res = run(root, tmp_path)
    assert res.status == RunStatus.OK
    assert res.peak_memory_mb is not None and 95 < res.peak_memory_mb < 1000


def test_task_reported_peak_memory_wins(task_repo, tmp_path):
    root = task_repo("""
        from evaluate import report
        report(score=1.0, peak_memory_mb=12345.0)
    """)
    assert run(root, tmp_path).peak_memory_mb == 12345.0


def test_result_to_dict_is_plain(task_repo, tmp_path):
    import json

    root = task_repo("from evaluate import report\nreport(score=2.0)\n")
    d = run(root, tmp_path).to_dict()
    assert d["status"] == "ok" and d["value"] == 2.0
    json.dumps(d)


def test_leftover_worktree_is_replaced(task_repo, tmp_path):
    root = task_repo("from evaluate import report\nreport(score=2.0)\n")
    req = request(root, tmp_path)
    gitops.worktree_add(root, req.worktree, req.commit)  # as a killed controller leaves it
    (req.worktree / "junk.txt").write_text("stale")
    res = execute(load_task(root), req)
    assert res.status == RunStatus.OK
    assert not req.worktree.exists()
    assert os.path.exists(res.log_path)


def test_a_run_that_used_more_cpu_than_its_cores_give_is_over_budget():
    """The harness's own CPU measure (wait4 of the run's tree): more CPU seconds than the slot's
    cores give in budget + overhead is a run that escaped its slot (threads or processes on
    other slots' cores): over budget. Judged from the numbers alone here."""
    from overnight.records import RunResult
    from overnight.run.outcome import _over_budget
    from overnight.task import Metric, TaskSpec

    task = TaskSpec(root=Path("."), command="x", editable=("train.py",), protected=(), budget=10, metric=Metric())
    limit = task.limits.wall_limit(10)  # 10 s + 30 s + half the budget
    used = RunResult(RunStatus.OK, value=1.0, wall_seconds=20.0, summary={"cpu_seconds": limit + 10})
    assert "more than its 1 core(s) give" in _over_budget(task, used, cores=1)
    assert _over_budget(task, used, cores=2) == ""
