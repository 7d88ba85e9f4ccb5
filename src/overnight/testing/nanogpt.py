"""The built-in nanogpt task, shrunken for tests: tiny vocabulary, model and context, no
compile, on a text corpus present on every machine (standard-library modules). A run starts
in a couple of seconds and a step takes milliseconds; nothing is downloaded.

Also the unigram bits per byte of a task's validation split (bench/noise.py's floor of
"learned nothing", which the slow end-to-end test beats).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from overnight import knobs

TINY_PREPARE = dict(VOCAB_SIZE=320, MAX_SEQ_LEN=64, EVAL_TOKENS=4096, VAL_PERMILLE=100, EXCLUDED_STEPS=1)
TINY_TRAIN = dict(DEPTH=2, ASPECT_RATIO=32, HEAD_DIM=32, TOTAL_BATCH_SIZE=512, DEVICE_BATCH_SIZE=8, COMPILE=False)
STDLIB = Path(sysconfig.get_paths()["stdlib"])
CORPUS_MODULES = ("argparse", "inspect", "typing", "pathlib", "textwrap", "dataclasses", "functools", "enum")


def corpus_text() -> str:
    """~0.5 MB of real text, present on every machine: a few standard-library modules."""
    return "\n\n".join((STDLIB / f"{n}.py").read_text(encoding="utf-8") for n in CORPUS_MODULES)


def shrink(task: Path, prepare: dict | None = None, train: dict | None = None) -> None:
    """The task's prepare.py and train.py rewritten to the tiny sizes (plus `prepare`/`train`)."""
    for name, values in (
        ("prepare.py", {**TINY_PREPARE, **(prepare or {})}),
        ("train.py", {**TINY_TRAIN, **(train or {})}),
    ):
        path = task / name
        path.write_text(knobs.rewrite(path.read_text(), values))


def load_prepare(task: Path, name: str = "nanogpt_prepare"):
    """The task's prepare.py imported in this process (as module `name`)."""
    spec = importlib.util.spec_from_file_location(name, task / "prepare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prepared(task: Path, cache: Path) -> Iterator:
    """For a fixture: prepare.py imported and its cache built in `cache`, the environment as a
    run's (no budget, seed or result file); the environment is restored when it resumes."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OVERNIGHT_CACHE", str(cache))
        mp.setenv("TORCHINDUCTOR_CACHE_DIR", str(cache / "inductor"))  # prepare sets it; undo after
        for var in ("OVERNIGHT_BUDGET", "OVERNIGHT_SEED", "OVERNIGHT_RESULT"):
            mp.delenv(var, raising=False)
        module = load_prepare(task, "nanogpt_prepare_under_test")
        module.prepare()
        yield module


def run_train(
    task: Path, cache: Path, budget: float = 2, seed: int = 1, result: Path | None = None, env: dict | None = None
):
    """`python train.py` in `task` as a run would start it (plus `env`); the CompletedProcess."""
    # One thread: the tiny model gains nothing from two, and on a busy machine two OpenMP threads
    # wait on each other at every op (a 2.5 s run then manages 5 steps instead of ~100).
    env = dict(
        os.environ,
        **(env or {}),
        OVERNIGHT_CACHE=str(cache),
        OVERNIGHT_BUDGET=str(budget),
        OVERNIGHT_SEED=str(seed),
        OMP_NUM_THREADS="1",
    )
    env.pop("OVERNIGHT_RESULT", None)
    if result is not None:
        env["OVERNIGHT_RESULT"] = str(result)
    return subprocess.run([sys.executable, "train.py"], cwd=task, env=env, capture_output=True, text=True, timeout=120)


def unigram_bpb(task: Path) -> tuple[float, float]:
    """(bits per byte, seconds to build/load the cache) of token frequencies counted on the
    training split (add-one smoothed, special tokens excluded), scored on exactly the targets
    evaluate_bpb scores."""
    import numpy as np

    t0 = time.time()
    prep = load_prepare(task)
    folder = prep.prepare()
    seconds = time.time() - t0
    sizes = prep.Tokenizer().token_bytes()
    train = np.memmap(folder / "train.bin", dtype=np.uint16, mode="r")
    val = np.memmap(folder / "val.bin", dtype=np.uint16, mode="r")
    counts = np.bincount(train, minlength=len(sizes)).astype(np.float64) + 1
    counts[sizes == 0] = 0  # special tokens are never scored
    logp = np.log2(counts / counts.sum(), where=counts > 0, out=np.zeros_like(counts))
    n = min(prep.EVAL_TOKENS, len(val) - 1) // prep.MAX_SEQ_LEN * prep.MAX_SEQ_LEN
    targets = np.asarray(val[1 : n + 1], dtype=np.int64)
    scored = sizes[targets] > 0
    return float(-logp[targets[scored]].sum() / sizes[targets].sum()), seconds
