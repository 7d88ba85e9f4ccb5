"""Noise of the nanogpt cpu preset under each training clock, on a quiet machine and under load.

For each clock (`[task] clock`: wall, cpu, tokens), each load (quiet; loaded: one competing CPU-bound
process, `python -c 'while True: pass'`, started for the run and killed after it), each config
(the baseline train.py; a small honest change, EMBEDDING_LR halved) and seeds 0..N-1, one run of
`python train.py` with the environment the harness gives a run of that clock. Each run appends one
JSON line to --out (val_bpb, steps, training and wall seconds, the load average); a run already
there is skipped, so a stopped bench resumes where it stopped. Runs are interleaved seed by seed,
so a drift of the machine spreads over every cell alike.

The table at the end (or of --out alone, with --summary): per clock x load, the unpaired sd of
the baseline's val_bpb over seeds, the paired-difference sd (baseline minus change, seed for
seed), the mean gain, the steps (mean and sd); then, per load, the ratio of the paired-difference
sd under each other clock to the unpaired sd under the wall clock (issue 15's goal: at most 1/5).

Usage: python bench/clock.py --out clock.jsonl [--seeds 8] [--budget 20] [--clocks wall,cpu,tokens]
                             [--loads quiet,loaded] [--data SPEC] [--summary]
The whole grid is 2 clocks x 2 loads x 2 configs x 8 seeds = 64 runs (about 45 min on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from task_throughput import cpu_line, make_task, run_once, setup  # noqa: E402

from overnight import knobs  # noqa: E402
from overnight.run.execute import clock_env  # noqa: E402
from overnight.task import CLOCKS  # noqa: E402

LOADS = ("quiet", "loaded")
CONFIGS = ("baseline", "change")
HOG = [sys.executable, "-c", "while True: pass"]


def make_tasks(folder: Path, data: str | None) -> dict[str, Path]:
    """The cpu preset as `overnight init` writes it, and a copy with EMBEDDING_LR halved."""
    tasks = {config: make_task("cpu", data, folder / config) for config in CONFIGS}
    train = tasks["change"] / "train.py"
    source = train.read_text()
    lr = knobs.find_constants(source)["EMBEDDING_LR"].value
    train.write_text(knobs.rewrite(source, {"EMBEDDING_LR": lr / 2}))
    return tasks


def key(row: dict) -> tuple:
    return row["clock"], row["load"], row["config"], row["seed"], row["budget"]


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def one_run(task: Path, clock: str, load: str, seed: int, budget: float) -> dict:
    """One run under `clock`, alone or beside a competing CPU-bound process."""
    before = os.getloadavg()[0]
    hog = subprocess.Popen(HOG) if load == "loaded" else None
    try:
        r = run_once(task, budget, seed=seed, env={"OVERNIGHT_CLOCK": clock, **clock_env(clock)})
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    return {
        "val_bpb": r["val_bpb"],
        "steps": r["num_steps"],
        "training_seconds": r["training_seconds"],
        "wall_seconds": r["wall_seconds"],
        "tokens_per_second": r["tokens_per_second"],
        "load_average_before": before,
        "load_average_after": r["load_average"],
    }


def sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else math.nan


def summary(rows: list[dict], budget: float) -> None:
    rows = [r for r in rows if r["budget"] == budget]
    cells: dict[tuple, dict[str, dict[int, dict]]] = {}
    for r in rows:
        cells.setdefault((r["clock"], r["load"]), {}).setdefault(r["config"], {})[r["seed"]] = r
    print(f"\nbudget {budget:g}s | val_bpb sds over seeds; paired = baseline minus change, seed for seed")
    print(
        f"{'clock':<6}{'load':<8}{'n':>3}{'base mean':>11}{'unpaired sd':>13}{'pairs':>7}{'gain':>9}"
        f"{'paired sd':>11}{'steps':>8}{'steps sd':>10}{'train s':>9}{'wall s':>8}"
    )
    unpaired, paired = {}, {}
    for clock in CLOCKS:
        for load in LOADS:
            cell = cells.get((clock, load))
            if not cell:
                continue
            base, change = cell.get("baseline", {}), cell.get("change", {})
            values = [r["val_bpb"] for r in base.values()]
            diffs = [base[s]["val_bpb"] - change[s]["val_bpb"] for s in sorted(base.keys() & change.keys())]
            steps = [r["steps"] for r in base.values()]
            unpaired[clock, load], paired[clock, load] = sd(values), sd(diffs)
            print(
                f"{clock:<6}{load:<8}{len(values):>3}{statistics.mean(values) if values else math.nan:>11.4f}"
                f"{sd(values):>13.4f}{len(diffs):>7}{statistics.mean(diffs) if diffs else math.nan:>9.4f}"
                f"{sd(diffs):>11.4f}{statistics.mean(steps) if steps else math.nan:>8.1f}{sd(steps):>10.1f}"
                f"{statistics.mean(r['training_seconds'] for r in base.values()) if base else math.nan:>9.1f}"
                f"{statistics.mean(r['wall_seconds'] for r in base.values()) if base else math.nan:>8.1f}"
            )
    for clock in CLOCKS[1:]:
        for load in LOADS:
            if (clock, load) in paired and ("wall", load) in unpaired:
                ratio = paired[clock, load] / unpaired["wall", load]
                print(
                    f"{load}: paired sd under the {clock} clock / unpaired sd under the wall clock = {ratio:.3f} "
                    f"({paired[clock, load]:.4f} / {unpaired['wall', load]:.4f}; goal <= 0.2)"
                )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="JSON lines, one per run; appended, resumed")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--budget", type=float, default=20.0, help="training seconds per run")
    ap.add_argument("--clocks", default=",".join(CLOCKS))
    ap.add_argument("--loads", default=",".join(LOADS))
    ap.add_argument("--data", default=None, help="data spec, as for `overnight init --data`")
    ap.add_argument("--summary", action="store_true", help="print the table of --out and stop")
    args = ap.parse_args()
    clocks = [c for c in args.clocks.split(",") if c]
    loads = [x for x in args.loads.split(",") if x]
    if not set(clocks) <= set(CLOCKS) or not set(loads) <= set(LOADS):
        raise SystemExit(f"--clocks takes {','.join(CLOCKS)}; --loads takes {','.join(LOADS)}")
    print(f"cpu: {cpu_line()}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    if args.summary:
        summary(read_rows(args.out), args.budget)
        return
    done = {key(r) for r in read_rows(args.out)}
    plan = [
        (clock, load, config, seed)
        for seed in range(args.seeds)
        for clock in clocks
        for load in loads
        for config in CONFIGS
        if (clock, load, config, seed, args.budget) not in done
    ]
    print(f"{len(plan)} runs to do, {len(done)} already in {args.out}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-clock-") as tmp:
        tasks = make_tasks(Path(tmp), args.data) if plan else {}
        for config, task in tasks.items():  # data cache and compile warm-up, outside every run
            # The tokens clock's calibration (once per machine) is the setup's, as in a night.
            env = {"OVERNIGHT_CLOCK": "tokens", "OVERNIGHT_BUDGET": f"{args.budget:g}"} if "tokens" in clocks else {}
            print(f"setup {config}: {setup(task, env):.1f}s", flush=True)
        for i, (clock, load, config, seed) in enumerate(plan, 1):
            row = {"clock": clock, "load": load, "config": config, "seed": seed, "budget": args.budget}
            row.update(one_run(tasks[config], clock, load, seed, args.budget))
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(
                f"[{i}/{len(plan)}] {clock:<4} {load:<6} {config:<8} seed {seed}: val_bpb {row['val_bpb']:.4f} | "
                f"steps {row['steps']} | train {row['training_seconds']:.1f}s | wall {row['wall_seconds']:.1f}s | "
                f"load {row['load_average_before']:.2f}",
                flush=True,
            )
    summary(read_rows(args.out), args.budget)


if __name__ == "__main__":
    main()
