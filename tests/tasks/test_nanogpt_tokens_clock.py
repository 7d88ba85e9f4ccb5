"""The nanogpt task's tokens clock (`[task] clock = "tokens"`): the task's setup measures the
baseline's tokens per second once per machine; every run then trains on budget x that rate
tokens, however loaded the machine is. Real subprocesses on the shrunken task."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from overnight.tasks import write_task
from overnight.testing.nanogpt import run_train, shrink

HOG = [sys.executable, "-c", "while True: pass"]
TOKENS = {"OVERNIGHT_CLOCK": "tokens"}


@pytest.fixture(scope="module")
def tokens_task(tmp_path_factory, corpus) -> Path:
    dest = tmp_path_factory.mktemp("tokens-task")
    write_task("nanogpt", dest, "cpu", f"text:{corpus}")
    shrink(dest, prepare={"COST_STEPS": 8})
    return dest


def setup(task: Path, cache: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, **TOKENS, OVERNIGHT_CACHE=str(cache), OVERNIGHT_BUDGET="1", OMP_NUM_THREADS="1")
    env.pop("OVERNIGHT_RESULT", None)
    proc = subprocess.run(
        [sys.executable, "prepare.py", "--setup"], cwd=task, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


def test_a_run_without_calibration_is_one_line(tokens_task, tmp_path):
    env = dict(os.environ, **TOKENS, OVERNIGHT_CACHE=str(tmp_path / "empty"))
    code = "import prepare; prepare.training_tokens()"
    out = subprocess.run([sys.executable, "-c", code], cwd=tokens_task, env=env, capture_output=True, text=True)
    line = out.stderr.strip()
    assert out.returncode != 0 and "\n" not in line, out.stderr[-2000:]
    assert line.startswith("error: the tokens clock has no calibration") and "python prepare.py --setup" in line


def test_other_clocks_have_no_token_budget(tokens_task, tmp_path):
    code = "import prepare; print(prepare.training_tokens())"
    for clock in ("wall", "cpu"):
        env = dict(os.environ, OVERNIGHT_CLOCK=clock, OVERNIGHT_CACHE=str(tmp_path))
        out = subprocess.run([sys.executable, "-c", code], cwd=tokens_task, env=env, capture_output=True, text=True)
        assert out.stdout.strip() == "None", out.stderr[-2000:]


@pytest.mark.slow  # 20 s: a calibration, then runs beside a competing process (the default run stays under 10 min)
def test_setup_calibrates_once_and_load_cannot_move_a_run(tokens_task, cache, tmp_path):
    first = setup(tokens_task, cache)
    (path,) = cache.glob("tokens-clock-*.json")
    calibration = json.loads(path.read_text())
    assert calibration["tokens_per_second"] > 0 and calibration["timed_steps"] >= 2
    assert f"kept in {path}" in first.stdout
    setup(tokens_task, cache)  # a resumed night's setup keeps the rate every run so far trained with
    assert json.loads(path.read_text()) == calibration

    def run(name: str, hogs: int) -> dict:
        result = tmp_path / f"{name}.json"
        competitors = [subprocess.Popen(HOG) for _ in range(hogs)]
        try:
            t0 = time.time()
            proc = run_train(tokens_task, cache, budget=1, seed=5, result=result, env=TOKENS)
        finally:
            for p in competitors:
                p.kill()
                p.wait()
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        return {**json.loads(result.read_text()), "wall": time.time() - t0}

    alone = run("alone", 0)
    # One competitor per core (and one more): a wall clock would train fewer steps here.
    loaded = run("loaded", (os.cpu_count() or 1) + 1)
    tokens_per_step = 512  # TINY_TRAIN's TOTAL_BATCH_SIZE
    budget_steps = calibration["tokens_per_second"] / tokens_per_step  # 1 s of the calibrated rate
    assert alone["num_steps"] == loaded["num_steps"], (alone, loaded)
    assert abs(alone["num_steps"] - budget_steps) <= 1, (alone, calibration)  # the untimed step's tokens count too
    assert loaded["val_bpb"] == pytest.approx(alone["val_bpb"], abs=1e-6)  # one thread: the same run
    # What the run charges to the budget is the tokens' worth, not its wall time.
    assert alone["training_seconds"] == pytest.approx(1.0, abs=0.2)
    assert loaded["training_seconds"] == pytest.approx(alone["training_seconds"], abs=1e-6)


def test_a_bigger_model_gets_fewer_tokens_for_the_same_compute(tokens_task, tmp_path):
    """The calibration holds the baseline's rate and FLOPs per token; a model with twice the
    matrix weights gets half the tokens, and embedding tables (looked up, not multiplied) count
    for nothing."""
    code = (
        "import json, torch.nn as nn, prepare\n"
        "path = prepare._calibration_path(); path.parent.mkdir(parents=True, exist_ok=True)\n"
        "path.write_text(json.dumps({'tokens_per_second': 1000.0, 'flops_per_token': 6 * 64 * 64}))\n"
        "small = nn.Sequential(nn.Embedding(500, 64), nn.Linear(64, 64))\n"
        "big = nn.Sequential(nn.Embedding(500, 64), nn.Linear(64, 128), nn.LayerNorm(128))\n"
        "print(prepare.training_tokens(), prepare.training_tokens(small), prepare.training_tokens(big))\n"
    )
    env = dict(os.environ, **TOKENS, OVERNIGHT_CACHE=str(tmp_path), OVERNIGHT_BUDGET="2")
    out = subprocess.run([sys.executable, "-c", code], cwd=tokens_task, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert [float(x) for x in out.stdout.split()] == [2000.0, 2000.0, 1000.0]
