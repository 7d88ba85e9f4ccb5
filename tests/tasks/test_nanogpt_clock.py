"""The nanogpt task's training clock (prepare.TrainingBudget, `[task] clock` as OVERNIGHT_CLOCK):
the wall clock by default; the process's CPU time per thread under "cpu", and under "steps" the
wall time less what its threads waited for a CPU: two measures a competing process on the same
core cannot shorten. Real subprocesses, each importing the task's prepare.py."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from overnight.run.environ import clock_env
from overnight.task_load import load_task
from overnight.tasks import write_task

# Counts work units (a fixed chunk of pure-Python arithmetic) until the clock passes the budget;
# the count starts on "go", once its competitors run (so they do not slow the imports).
# Each unit is a "step" of one "token" served through the budget, as train.py's loader does.
COUNTER = textwrap.dedent("""\
    import sys
    from prepare import training_budget
    budget = training_budget()
    print("ready", flush=True)
    sys.stdin.readline()
    units = 0
    while budget.next_step():
        budget.serve(1)
        sum(i * i for i in range(2000))
        units += 1
    print(units)
""")
HOG = [sys.executable, "-c", "while True: pass"]

pinning = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("task")
    write_task("nanogpt", dest, "cpu", None)
    (dest / "counter.py").write_text(COUNTER)
    return dest


def env_of(clock: str | None, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OVERNIGHT_CLOCK", "OMP_WAIT_POLICY")}
    if clock is not None:
        env.update(OVERNIGHT_CLOCK=clock, **clock_env(clock))
    return {**env, **extra}


def on_core(core: int):
    return lambda: os.sched_setaffinity(0, {core})


def count(task: Path, clock: str, budget: float, core: int, competitors: int = 0) -> int:
    """Work units the counter does in `budget` seconds of `clock` beside `competitors` CPU-bound
    processes, all pinned to `core` (so the clock's divisor is 1: one core, one thread)."""
    proc = subprocess.Popen(
        [sys.executable, "counter.py"],
        cwd=task,
        env=env_of(clock, OMP_NUM_THREADS="1", OVERNIGHT_BUDGET=str(budget)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=on_core(core),
    )
    hogs = []
    try:
        assert proc.stdout.readline() == "ready\n", proc.stderr.read()[-2000:]
        hogs = [subprocess.Popen(HOG, preexec_fn=on_core(core)) for _ in range(competitors)]
        time.sleep(0.2 if hogs else 0)  # the competitors are running before the count starts
        out, err = proc.communicate("go\n", timeout=120)
    finally:
        for p in [*hogs, proc]:
            p.kill()
            p.wait()
    assert proc.returncode == 0, err[-2000:]
    return int(out.split()[-1])


@pytest.mark.parametrize("preset, clock", [("cpu", "steps"), ("gpu", "wall")])
def test_each_preset_has_its_clock(tmp_path, preset, clock):
    write_task("nanogpt", tmp_path, preset, None)
    assert load_task(tmp_path).clock == clock


def test_wall_is_the_default_and_a_wrong_clock_is_one_line(task):
    code = "import prepare; print(prepare.CLOCK, prepare.training_budget().budget)"
    env = {**env_of(None), "OVERNIGHT_BUDGET": "7"}
    out = subprocess.run([sys.executable, "-c", code], cwd=task, env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["wall", "7.0"], out.stderr[-2000:]
    bad = subprocess.run([sys.executable, "-c", code], cwd=task, env=env_of("process"), capture_output=True, text=True)
    line = "error: OVERNIGHT_CLOCK is 'process' — use wall, cpu, tokens, steps"
    assert bad.returncode != 0 and bad.stderr.strip() == line


@pinning
def test_cpu_clock_divides_by_the_threads_it_may_use(task):
    # Four threads asked for on one core: the clock divides by one (more threads than cores buy
    # no more time); on two cores with two threads, by two.
    code = "import prepare; b = prepare.training_budget(); b._sample(); print(b._threads)"
    cores = sorted(os.sched_getaffinity(0))

    def divisor(threads: str, allowed: set[int]) -> int:
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=task,
            env=env_of("cpu", OMP_NUM_THREADS=threads),
            capture_output=True,
            text=True,
            preexec_fn=lambda: os.sched_setaffinity(0, allowed),
        )
        assert out.returncode == 0, out.stderr[-2000:]
        return int(out.stdout)

    assert divisor("4", {cores[0]}) == 1
    if len(cores) >= 2:
        assert divisor("2", set(cores[:2])) == 2


@pytest.mark.slow  # 17 s each: two training processes side by side (the default run stays under 10 min)
@pinning
@pytest.mark.parametrize("clock", ["cpu", "steps"])
def test_a_load_proof_clock_under_a_competing_process(task, clock):
    """Two competing CPU-bound processes on the counter's core take about two thirds of it: the
    wall clock then counts about a third of the work in its budget, the cpu and steps clocks the
    same work as alone (steps: the wall time less the time the counter waited in the run queue).
    Whatever else runs on the machine only lowers the wall figure further; the load-proof
    figures moved by up to a fifth between runs alone on this project's busy 2-core VM (cache,
    steal time), hence the wide band."""
    core = sorted(os.sched_getaffinity(0))[-1]
    budget = 1.0
    alone = count(task, clock, budget, core)
    loaded = count(task, clock, budget, core, competitors=2)
    wall_loaded = count(task, "wall", budget, core, competitors=2)
    figures = f"alone {alone}, {clock} clock loaded {loaded}, wall clock loaded {wall_loaded}"
    assert alone > 500, figures  # enough units for the ratios to mean something
    assert 0.7 < loaded / alone < 1.4, figures
    assert wall_loaded / alone < 0.6 and loaded > 1.5 * wall_loaded, figures
