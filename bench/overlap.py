"""The spread of repeated runs of the nanogpt task with and without a re-score beside them.

Issue 15: in a night on the cpu preset (2 cores, one slot) the old controller re-scored runs
"off the slots", so a `prepare.py --rescore` ran beside a candidate's timed run and the
candidate's step count, and so its val_bpb, were partly the re-score's doing. Today a
re-score takes a slot (night/rescorer.py). This measures what the overlap cost: N seeds of
the baseline alone, and the same seeds each with `--beside` concurrent `prepare.py --rescore`
processes of an earlier run (the reference, seed 0) running beside it from its start to its
end, one after another, as the old code ran a keep's re-scores beside the next runs.
Runs are interleaved (alone, beside, next seed), so a drift of the machine hits both alike.

Prints, for both: mean and sd of val_bpb, mean steps; the CPU (lscpu's model name, hardware
bf16) and the load average. Resumable: one JSON line per run appended to --out; runs already
there (same mode, seed, budget, preset) are skipped; the task folder (with the reference run)
is kept beside it (--out's name + ".task") and reused.

Usage: python bench/overlap.py [--seeds 8] [--budget 20] [--beside 1] [--preset cpu]
                               [--out FILE.jsonl]  (default: $OVERNIGHT_CACHE/bench/overlap.jsonl)
The data cache is $OVERNIGHT_CACHE (default ~/.cache/overnight), shared with real runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from task_throughput import cpu_line, make_task, run_once, setup  # noqa: E402


def load(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()] if out.exists() else []


def reference(task: Path, budget: float) -> Path:
    """The earlier run whose weights the concurrent re-scores score (seed 0), made once."""
    run_dir = task / "reference"
    if not (run_dir / "model.pt").exists() or not (run_dir / "result.json").exists():
        run_dir.mkdir(exist_ok=True)
        env = dict(os.environ, OVERNIGHT_BUDGET=f"{budget:g}", OVERNIGHT_SEED="0")
        env["OVERNIGHT_RESULT"] = str(run_dir / "result.json")
        proc = subprocess.run([sys.executable, "train.py"], cwd=task, env=env, capture_output=True, text=True)
        if proc.returncode != 0 or not (run_dir / "model.pt").exists():
            log = (proc.stdout + proc.stderr)[-3000:]
            raise SystemExit(f"the reference run failed (exit {proc.returncode}):\n{log}")
    return run_dir


class Beside:
    """A protected re-score of the reference run running from now until `stop`: one
    `prepare.py --rescore` after another, as the old harness ran a keep's re-scores (two at a
    time, one per thread of its pool) beside the slots' next runs; notes what each took."""

    def __init__(self, task: Path, run_dir: Path, i: int):
        self.task, self.i = task, i
        self.env = dict(os.environ, OVERNIGHT_RESCORE=str(run_dir / "result.json"))
        self.env["OVERNIGHT_RESULT"] = str(run_dir / f"rescore-{i}.json")
        self.stop = threading.Event()
        self.seconds: list[float] = []
        self.failed: int | None = None
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop.is_set():
            t0 = time.time()
            code = subprocess.run(
                [sys.executable, "prepare.py", "--rescore"], cwd=self.task, env=self.env, capture_output=True
            ).returncode
            if code != 0:
                self.failed = code
                return
            self.seconds.append(time.time() - t0)

    def join(self) -> list[float]:
        """The seconds of each re-score (the last one runs to its end); exits the bench if one failed."""
        self.stop.set()
        self.thread.join()
        if self.failed is not None:
            raise SystemExit(f"the concurrent re-score failed (exit {self.failed})")
        return self.seconds


def measure(task: Path, ref: Path, seed: int, budget: float, beside: int) -> dict:
    started = [Beside(task, ref, i) for i in range(beside)]
    r = run_once(task, budget, seed=seed)
    lasted = [x.join() for x in started]
    return {
        "val_bpb": r["val_bpb"],
        "num_steps": r["num_steps"],
        "training_seconds": r["training_seconds"],
        "tokens_per_second": r["tokens_per_second"],
        "wall_seconds": r["wall_seconds"],
        "load_average": r["load_average"],
        "rescore_seconds": lasted,  # per concurrent stream: each re-score's seconds
    }


def summary(rows: list[dict], mode: str) -> str:
    mine = [r for r in rows if r["mode"] == mode]
    if not mine:
        return f"{mode:>6}: no runs"
    bpb = [r["val_bpb"] for r in mine]
    sd = statistics.stdev(bpb) if len(bpb) > 1 else math.nan
    steps = statistics.mean(r["num_steps"] for r in mine)
    load = statistics.mean(r["load_average"] for r in mine)
    return (
        f"{mode:>6}: val_bpb {statistics.mean(bpb):.4f} ± {sd:.4f} (mean ± sd, n {len(bpb)}) | "
        f"steps {steps:.1f} | load {load:.2f} (mean of the runs' 1-minute load averages)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu", choices=["cpu", "gpu"])
    ap.add_argument("--data", default=None, help="data spec, as for `overnight init --data`")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--budget", type=float, default=20.0, help="training seconds of each run")
    ap.add_argument("--beside", type=int, default=1, help="concurrent re-scores started with each 'beside' run")
    cache = Path(os.environ.get("OVERNIGHT_CACHE") or Path.home() / ".cache" / "overnight")
    ap.add_argument("--out", type=Path, default=cache / "bench" / "overlap.jsonl", help="default: %(default)s")
    args = ap.parse_args()
    args.out = args.out.resolve()  # the runs' result paths are read from the task's folder

    args.out.parent.mkdir(parents=True, exist_ok=True)
    folder = args.out.with_name(args.out.name + ".task")
    if not (folder / "train.py").exists():
        make_task(args.preset, args.data, folder)
    print(f"task {folder} | preset {args.preset} | budget {args.budget:g}s | {cpu_line()}", flush=True)
    key = {"preset": args.preset, "budget": args.budget, "beside": args.beside}
    done = {(r["mode"], r["seed"]) for r in load(args.out) if all(r.get(k) == v for k, v in key.items())}
    todo = [
        (seed, mode, n)
        for seed in range(1, args.seeds + 1)
        for mode, n in (("alone", 0), ("beside", args.beside))
        if (mode, seed) not in done
    ]
    print(f"{len(done)} run(s) already in {args.out}, {len(todo)} to go", flush=True)
    if todo:
        s = setup(folder, {})
        print(f"setup: {s:.1f}s (data cache if missing, compile warm-up; outside every run)", flush=True)
        ref = reference(folder, args.budget)
    for seed, mode, n in todo:
        row = {"mode": mode, "seed": seed, **key, **measure(folder, ref, seed, args.budget, n)}
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(
            f"{mode:>6} seed {seed}: val_bpb {row['val_bpb']:.4f} | steps {row['num_steps']} | "
            f"tok/s {row['tokens_per_second']:.0f} | re-scores beside it "
            f"{sum(map(len, row['rescore_seconds']))} | load {row['load_average']:.2f}",
            flush=True,
        )
    rows = [r for r in load(args.out) if all(r.get(k) == v for k, v in key.items()) and r["seed"] <= args.seeds]
    print(summary(rows, "alone"))
    print(summary(rows, "beside"))
    print(f"load_average: {os.getloadavg()[0]:.2f} (1-minute, at the end; > cores means a shared machine)")


if __name__ == "__main__":
    main()
