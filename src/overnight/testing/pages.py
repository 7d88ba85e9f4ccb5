"""Nights for the page tests and bench/report_page.py (report.html, `overnight serve`).

`llm_night`: a real night on the toy task (real runs, git, the noise judge) whose proposals come
from the llm proposer through the scripted LLM server on loopback: a kept change, a rejected
reply, a crash, a second keep, and a worse change whose description is markup; then `verify`
and `ablate`. Every section of the page has something to show.

`synthetic_night`: a journal of `n` experiments written through the Journal's own methods (no
runs executed: a thousand real runs would take the benchmark an hour) with the shapes a long
night has: screened, discarded, kept, crashed and duplicate candidates, one to four runs with
log tails, diffs of train.py's constants, llm replies for a third of them.
"""

from __future__ import annotations

import random
from pathlib import Path

from overnight.journal import Journal
from overnight.records import EventKind, ExpStatus, RunResult, RunStatus
from overnight.tasks import write_task
from overnight.testing.fake_llm import GELU_REPLY, edit_reply, options, reply

NORM = "USE_NORM = False  # normalise activations"
LR = "LEARNING_RATE = 0.01  # peak learning rate"
NASTY = "<script>alert('x')</script> raise the learning rate & see"


def llm_night(root: Path, fake, tag: str = "t", verify_runs: int = 2) -> Path:
    """The toy task at `root`, one night of six experiments proposed by the llm through `fake`
    (a FakeLLM), verified and ablated with `verify_runs` fresh seeds each."""
    from overnight.judges.noise import NoiseSettings
    from overnight.night.config import RunConfig
    from overnight.night.controller import Controller
    from overnight.night.tags import open_journal
    from overnight.task_load import load_task
    from overnight.testing.toy import write_toy
    from overnight.verify import Remeasure, ablate, verify

    write_toy(root)
    fake.push(
        reply(GELU_REPLY, 1200, 80),
        reply("No blocks here."),
        reply("Still none."),
        reply(edit_reply(NORM, NORM + "\nraise SystemExit('diverged: loss is nan')", "Stop early when it diverges.")),
        reply(edit_reply(NORM, NORM.replace("False", "True"), "Normalise activations.")),
        reply(edit_reply(LR, LR.replace("0.01", "0.3"), NASTY)),
    )
    cfg = RunConfig(
        tag=tag,
        proposer="llm",
        experiments=6,
        proposer_options=options(fake),
        noise=NoiseSettings(remeasure_every=0, baseline_runs=8),  # more runs than a table cell shows
        seed_secret="",  # fixed seeds, and fixed fresh ones below: the same page every time
    )
    Controller(root, cfg).run()
    journal = open_journal(root)
    rm = Remeasure(root, load_task(root), journal, tag, verify_runs, seeds=[1000 + i for i in range(verify_runs)])
    verify(rm)
    ablate(rm)
    journal.close()
    return root


DIFF = """diff --git a/train.py b/train.py
index 7352bc2..5682912 100644
--- a/train.py
+++ b/train.py
@@ -9,12 +9,12 @@ from evaluate import train_and_evaluate
 # ---------------------------------------------------------------------------
 # Hyperparameters (edit these)
 # ---------------------------------------------------------------------------
-LEARNING_RATE = {old_lr}  # peak learning rate
-WEIGHT_DECAY = 0.1  # decoupled weight decay
+LEARNING_RATE = {new_lr}  # peak learning rate
+WEIGHT_DECAY = {wd}  # decoupled weight decay
 WARMUP_RATIO = 0.5  # fraction of the budget spent warming up
 WIDTH = 64  # model width
 DEPTH = 4  # number of layers
"""
LOG = "".join(f"step {s:5d} | loss {{loss:.4f}} | lr 3.0e-04 | dt 41ms | tok/s 99,812\n" for s in range(0, 3200, 100))
SUMMARY = "---\nval_bpb: {value:.6f}\ntraining_seconds: 20.1\ntotal_seconds: 24.3\npeak_vram_mb: 1432.5\n"
CRASH = (
    'Traceback (most recent call last):\n  File "train.py", line 210, in <module>\n    loss.backward()\n'
    "RuntimeError: CUDA out of memory\n"
)
REPLY = "I will lower the learning rate: the loss curve plateaus early.\n\n" + "Reasoning line.\n" * 60


def synthetic_night(root: Path, n: int = 1000, tag: str = "big", seed: int = 0) -> Path:
    """A toy task folder at `root` (overnight.toml, no git needed for a report) whose journal
    holds a night of `n` experiments; see the module's docstring."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    write_task("toy", root)
    state = root / ".overnight"
    j = Journal(state / "journal.db")
    j.add_tag(tag, "0" * 40, {"budget": 20.0, "judge": "noise", "proposer": "hybrid"})
    j.event(tag, EventKind.SLOTS, '{"executor": "local", "slots": [{"slot": "0", "node": "local", "gpu": 0}]}')
    inc_id = inc_value = None
    for i in range(n):
        kind = (
            "baseline" if i == 0 else rng.choices(["screened", "full", "crash", "duplicate"], weights=[30, 58, 9, 3])[0]
        )
        llm = i > 0 and i % 3 == 0
        params: dict = {"LEARNING_RATE": round(rng.uniform(1e-4, 1e-2), 6)}
        if llm:
            rel = f"{tag}/llm/{i:04d}.md"
            (state / rel).parent.mkdir(parents=True, exist_ok=True)
            (state / rel).write_text(REPLY)
            params |= {"replies": rel, "usage": {"calls": 1, "tokens_in": 4200, "tokens_out": 380, "cost_usd": 0.011}}
        eid = j.add_experiment(
            tag,
            inc_id,
            "0" * 40,
            "baseline" if i == 0 else f"try #{i}: lr {params['LEARNING_RATE']}",
            "llm" if llm else ("baseline" if i == 0 else "optuna"),
            params,
            {"train.py": "…"},
        )
        diff = (
            "" if i == 0 else DIFF.format(old_lr=0.01, new_lr=params["LEARNING_RATE"], wd=round(rng.uniform(0, 0.2), 4))
        )
        j.set_commit(eid, f"{eid:040x}", diff)
        true = 1.0 if i == 0 else inc_value + rng.gauss(0.01, 0.02)
        if kind == "duplicate":
            j.set_status(eid, ExpStatus.DUPLICATE, f"the files of #{max(1, eid - 7)}: not run", true)
            continue
        if kind == "screened":
            run = j.start_run(eid, 0, slot="0", node="local", budget=5.0, screen=True)
            j.finish_run(run, _result(RunStatus.OK, true + 0.05, rng))
            j.set_status(eid, ExpStatus.SCREENED, f"screened out at 25 % of the budget: {true + 0.05:.5f}")
            continue
        if kind == "crash":
            run = j.start_run(eid, 0, slot="0", node="local", budget=20.0)
            j.finish_run(run, _result(RunStatus.CRASH, None, rng))
            j.set_status(eid, ExpStatus.CRASHED, "exit code 1: RuntimeError: CUDA out of memory")
            continue
        seeds = 5 if i == 0 else rng.choice([1, 2, 2, 3, 4])
        values = [true + rng.gauss(0, 0.003) for _ in range(seeds)]
        for s, v in enumerate(values):
            run = j.start_run(eid, s, slot="0", node="local", budget=20.0)
            j.finish_run(run, _result(RunStatus.OK, v, rng))
        mean = sum(values) / len(values)
        better = i == 0 or (seeds >= 2 and mean < inc_value - 0.006)
        j.set_status(
            eid,
            ExpStatus.KEPT if better else ExpStatus.DISCARDED,
            "baseline" if i == 0 else f"gain {inc_value - mean:+.5f} over {seeds} run(s)",
            mean,
        )
        if better:
            inc_id, inc_value = eid, mean
    j.event(tag, EventKind.DRIFT, f"#{inc_id}'s re-measure moved 3.1 sd: the machine may have changed")
    j.close()
    return root


def _result(status: RunStatus, value: float | None, rng: random.Random) -> RunResult:
    log = LOG.format(loss=3.0 + rng.random())
    tail = log + (SUMMARY.format(value=value) if value is not None else CRASH)
    return RunResult(
        status=status,
        value=value,
        exit_code=0 if status == RunStatus.OK else 1,
        wall_seconds=24.3 if value is not None else 3.2,
        training_seconds=20.1 if value is not None else None,
        peak_memory_mb=1432.5,
        log_path="runs/x/log.txt",
        log_tail=tail,
        error="" if value is not None else "exit code 1",
    )


def write_page(root: Path, tag: str = "t") -> Path:
    """`overnight report`'s three files for `tag`; the path of report.html."""
    from overnight.night.tags import open_journal
    from overnight.report.markdown import write_report
    from overnight.task_load import load_task

    journal = open_journal(root)
    try:
        write_report(journal, tag, load_task(root), root, root / ".overnight" / tag)
    finally:
        journal.close()
    return root / ".overnight" / tag / "report.html"


class Served:
    """`overnight serve ROOT --port 0` as a subprocess: its URL from the line it prints first;
    stopped (SIGTERM, then SIGKILL) on leaving the `with`."""

    def __init__(self, root: Path, *args: str):
        import subprocess
        import sys

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "overnight", "serve", str(root), "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        first = self.proc.stdout.readline()
        while first.startswith("waiting for "):  # started before its night: the URL comes once it exists
            first = self.proc.stdout.readline()
        if "http://" not in first:
            self.proc.kill()
            raise AssertionError(f"serve did not start: {first!r} {self.proc.stderr.read()!r}")
        self.url = first[first.index("http://") :].split()[0]

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc) -> None:
        import subprocess

        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()
