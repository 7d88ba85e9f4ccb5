"""What every executor promises the controller (executors/base.py), as one suite each
executor's test class inherits (optuna's `testing/pytest_samplers.py` idea):

    class TestLocal(ExecutorContract):
        @pytest.fixture
        def make(self):
            return lambda task: LocalExecutor(task, plan_slots(2, None))

`make` builds the executor for a task. Real parts: a task repository of the test's own whose
candidates (commits) report, crash, sleep past the timeout or wait to be stopped; real
processes wherever the executor runs them.
"""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

from overnight import gitops
from overnight.executors.base import Job
from overnight.records import RunRequest, RunResult, RunStatus
from overnight.run.environ import protected_hashes
from overnight.task_load import load_task
from overnight.testing.toy import make_task_repo

# budget 1 s, timeout 4 s: a run past its timeout is killed within seconds.
TOML = """\
[task]
command = "{python} train.py"
editable = ["train.py"]
protected = ["evaluate.py"]
budget = 1
timeout = 4

[metric]
name = "score"
goal = "minimize"

# The executor's mechanics, with process ids the test can see (a sandbox's PID namespace hides
# them; run/test_sandbox.py and the adversarial suites run it).
[limits]
sandbox = false
"""
OK = """\
import os
from evaluate import report
print("hello from the run")
report(score=1.0 + int(os.environ["OVERNIGHT_SEED"]) / 100)
"""
CRASH = 'print("about to fail")\nraise SystemExit(3)\n'
SLEEP = "import time\ntime.sleep(120)\n"
# Writes its pid where the test looks (on loopback every node shares this machine's /tmp), then waits.
WAIT = "import os, pathlib, time\npathlib.Path({mark!r}).write_text(str(os.getpid()))\ntime.sleep(120)\n"
RESOLVE = 60  # seconds a run's future may take (a Ray worker may start cold)


class Bench:
    """A task repository, its executor, and jobs for commits of train.py texts."""

    def __init__(self, root: Path, executor, tmp: Path):
        self.root, self.executor, self.tmp = root, executor, tmp
        self.task = executor.task
        self.base = gitops.head(root)
        self.hashes = protected_hashes(self.task, self.base)
        self.ids = iter(range(1, 1000))

    def run_dir(self, job: Job) -> Path:
        return self.tmp / "runs" / str(job.run_id)

    def job(self, train: str, seed: int = 0, hashes: dict | None = None) -> Job:
        commit = gitops.make_commit(self.root, self.base, {"train.py": train}, "candidate")
        run_id = next(self.ids)
        request = RunRequest(
            commit=commit,
            seed=seed,
            run_dir=self.tmp / "runs" / str(run_id),
            worktree=self.tmp / "worktrees" / str(run_id),
            protected_hashes=self.hashes if hashes is None else hashes,
        )
        return Job(run_id, request=request)

    def run(self, train: str, seed: int = 0, slot: int = 0, **kw) -> tuple[Job, RunResult]:
        job = self.job(train, seed, **kw)
        result = self.executor.start(job, self.executor.slots[slot]).result(timeout=RESOLVE)
        assert isinstance(result, RunResult), result
        return job, result


def gone(pid: int, timeout: float = 15) -> bool:
    """Whether process `pid` ends (or is a zombie left to its parent) within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


class ExecutorContract:
    @pytest.fixture
    def make(self):
        """Overridden by each implementation: task -> a new executor for it."""
        raise NotImplementedError

    @pytest.fixture
    def bench(self, make, tmp_path):
        yield from self._bench(make, tmp_path, TOML)

    @pytest.fixture
    def long_bench(self, make, tmp_path):
        """A task whose hard timeout is far off, so a stop never races it (a Ray cancel takes
        seconds to reach its worker on a loaded machine: seen as TIMEOUT at 4 s)."""
        yield from self._bench(make, tmp_path, TOML.replace("timeout = 4", "timeout = 300"))

    @staticmethod
    def _bench(make, tmp_path, toml):
        root = make_task_repo(tmp_path / "task", OK, toml=toml)
        executor = make(load_task(root))
        yield Bench(root, executor, tmp_path)
        executor.close()

    def test_slots_are_stable_and_named_uniquely(self, bench):
        slots = bench.executor.slots
        assert slots and len({s.name for s in slots}) == len(slots)
        assert all(isinstance(s.name, str) and s.name and isinstance(s.node, str) for s in slots)
        assert bench.executor.slots == slots  # asked again: the same, in the same order

    def test_a_run_resolves_to_its_result(self, bench):
        job, res = bench.run(OK, seed=7)
        assert res.status == RunStatus.OK and res.value == pytest.approx(1.07) and res.exit_code == 0, res
        assert Path(res.log_path) == bench.run_dir(job) / "log.txt"  # the log is on this machine
        assert "hello from the run" in Path(res.log_path).read_text()
        assert isinstance(bench.executor.node_of(job), str)

    def test_a_crash_resolves_to_crash_with_its_exit_code(self, bench):
        _, res = bench.run(CRASH)
        assert res.status == RunStatus.CRASH and res.exit_code == 3 and res.value is None, res
        assert "about to fail" in Path(res.log_path).read_text()

    def test_a_run_past_its_timeout_resolves_to_timeout(self, bench):
        t0 = time.monotonic()
        _, res = bench.run(SLEEP)
        assert res.status == RunStatus.TIMEOUT and res.value is None, res
        assert time.monotonic() - t0 < 4 + RESOLVE / 2

    def test_changed_protected_files_never_run(self, bench):
        mark = bench.tmp / "ran"
        hashes = {path: "0" * 64 for path in bench.hashes}
        _, res = bench.run(WAIT.format(mark=str(mark)), hashes=hashes)
        assert res.status == RunStatus.INVALID and "evaluate.py" in res.error, res
        assert not mark.exists()

    def test_stop_all_interrupts_running_runs(self, long_bench):
        """Each slot busy with a run that would sleep two minutes: stop_all resolves every
        future to INTERRUPTED within seconds, the processes gone."""
        bench = long_bench
        marks = [bench.tmp / f"started-{i}" for i in range(len(bench.executor.slots))]
        futures = [
            bench.executor.start(bench.job(WAIT.format(mark=str(mark)), seed=i), slot)
            for i, (mark, slot) in enumerate(zip(marks, bench.executor.slots))
        ]
        deadline = time.monotonic() + RESOLVE
        while not all(m.exists() and m.read_text() for m in marks):
            assert time.monotonic() < deadline, [m.exists() for m in marks]
            time.sleep(0.05)
        t0 = time.monotonic()
        bench.executor.stop_all()
        results = [f.result(timeout=RESOLVE) for f in futures]
        assert [r.status for r in results] == [RunStatus.INTERRUPTED] * len(futures), results
        assert time.monotonic() - t0 < 30
        assert all(gone(int(m.read_text())) for m in marks)

    def test_close_twice(self, bench):
        bench.run(OK)
        bench.executor.close()
        bench.executor.close()
