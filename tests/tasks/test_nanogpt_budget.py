"""The nanogpt task's training budget (prepare.TrainingBudget): counted by the protected file, so
an edit of train.py cannot move it. A driver stands in for train.py's loop (`next_step()` before
each step, a batch served through the budget, then the step's work): real subprocesses, each
importing the task's prepare.py, real time.

Under the steps clock a step costs what it takes: twice the work per token, or a sleep as long
as the work, buys half the steps (issue 30 asks at most 0.65x); a commit's journaled cost gives
every later run the same steps however slow the machine is; a first measure near its parent's
cost takes the parent's exactly; the loader refuses a batch once the budget is spent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from overnight.run.environ import clock_env

DRIVER = textwrap.dedent("""\
    import json, sys, time
    from prepare import EXCLUDED_STEPS, training_budget
    work, pause, tokens, first_tokens = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    budget = training_budget()
    steps = 0
    while budget.next_step():
        budget.serve(first_tokens if steps < EXCLUDED_STEPS else tokens)  # what the loader does per batch
        t = time.perf_counter()
        while time.perf_counter() - t < work:
            pass
        time.sleep(pause)
        steps += 1
    try:
        budget.serve(tokens)  # one more batch after the budget said stop
        refused = ""
    except SystemExit as exc:
        refused = str(exc)
    print(json.dumps({**budget.summary(), "steps": steps, "refused": refused}))
""")


@pytest.fixture(scope="module")
def driver(task) -> Path:
    (task / "driver.py").write_text(DRIVER)
    return task


def drive(
    task: Path,
    clock: str,
    budget: float,
    work: float,
    pause: float = 0.0,
    tokens: int = 16,
    first_tokens: int | None = None,
    **env,
) -> dict:
    full = {k: v for k, v in os.environ.items() if not k.startswith("OVERNIGHT_")}
    full.update(clock_env(clock), OVERNIGHT_CLOCK=clock, OVERNIGHT_BUDGET=str(budget), OMP_NUM_THREADS="1", **env)
    args = [str(work), str(pause), str(tokens), str(first_tokens or tokens)]
    out = subprocess.run(
        [sys.executable, "driver.py", *args], cwd=task, env=full, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.splitlines()[-1])


def test_under_the_steps_clock_a_step_pays_for_what_it_costs(driver):
    honest = drive(driver, "steps", 0.8, work=0.008)
    twice = drive(driver, "steps", 0.8, work=0.016)  # a second pass over each batch
    sleeps = drive(driver, "steps", 0.8, work=0.008, pause=0.008)  # a sleep as long as the step
    figures = f"steps: honest {honest['steps']}, twice the work {twice['steps']}, sleeping {sleeps['steps']}"
    assert honest["steps"] >= 40, figures
    assert twice["steps"] <= 0.65 * honest["steps"] and sleeps["steps"] <= 0.65 * honest["steps"], figures
    for r in (honest, twice, sleeps):  # each charged its budget, at the cost it measured
        assert r["clock"] == "steps" and r["training_seconds"] == pytest.approx(0.8, abs=0.06), r
        assert r["cost"] == r["measured_cost"] and r["cost_ref"] is None
        assert r["measured_seconds"] == pytest.approx(0.8, rel=0.3), r
        assert r["refused"].startswith("error: the training budget is spent"), r
    assert twice["cost"] > 1.6 * honest["cost"] and sleeps["cost"] > 1.6 * honest["cost"]


def test_a_journaled_cost_fixes_the_steps_whatever_the_speed(driver):
    """OVERNIGHT_COST (the harness's, from the commit's first run): the budget buys budget/cost
    tokens; a slower machine (here: slower work) trains the same steps, and says so in the
    seconds it measured, which the harness checks against the budget."""
    known = {"OVERNIGHT_COST": repr(2**-10), "OVERNIGHT_COST_REF": "0.0004"}
    fast = drive(driver, "steps", 0.5, work=0.002, tokens=8, **known)
    slow = drive(driver, "steps", 0.5, work=0.008, tokens=8, **known)
    assert fast["steps"] == slow["steps"] == 64  # 0.5 s at 1/1024 s per token: 512 tokens, 8 a step
    assert fast["cost"] == slow["cost"] == 2**-10 and fast["cost_ref"] == 0.0004
    assert slow["measured_seconds"] > 2.5 * fast["measured_seconds"]


def test_a_first_measure_near_the_parents_cost_takes_it(driver):
    own = drive(driver, "steps", 0.5, work=0.005, tokens=10)["measured_cost"]
    near = drive(driver, "steps", 0.5, work=0.005, tokens=10, OVERNIGHT_COST_REF=repr(own * 1.03))
    far = drive(driver, "steps", 0.5, work=0.005, tokens=10, OVERNIGHT_COST_REF=repr(own * 0.5))
    assert near["cost"] == pytest.approx(own * 1.03, rel=1e-9), near  # the parent's, exactly
    assert far["cost"] == far["measured_cost"] and abs(far["cost"] / own - 1) < 0.3, far  # its own


def test_the_untimed_first_steps_are_charged_at_the_timed_rate(driver):
    """EXCLUDED_STEPS (compile, warm-up) are not timed; a candidate that made them huge (a big
    TOTAL_BATCH_SIZE) would train those tokens for free, so they are charged at the median timed
    cost per token: here the untimed step's 2,000 tokens are worth 1.25 s of a 0.5 s budget."""
    plain = drive(driver, "wall", 0.5, work=0.005, tokens=8)
    greedy = drive(driver, "wall", 0.5, work=0.005, tokens=8, first_tokens=2000)
    assert plain["steps"] > 30, plain
    assert greedy["steps"] <= 3 and greedy["training_seconds"] > 1.0, greedy


def test_the_clocks_report_their_figures(driver):
    wall = drive(driver, "wall", 0.3, work=0.004)
    assert wall["clock"] == "wall" and "measured_seconds" not in wall and "cost" not in wall
    assert wall["training_seconds"] == pytest.approx(0.3, abs=0.05) and wall["num_steps"] == wall["steps"]
    assert wall["total_tokens_M"] == pytest.approx(16 * wall["steps"] / 1e6)
