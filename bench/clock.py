"""Noise of the nanogpt cpu preset under each training clock, on a quiet machine and under load.

For each clock (`[task] clock`: wall, cpu, tokens, steps), each load (quiet; loaded: one
competing CPU-bound process, `python -c 'while True: pass'`, started for the run and killed
after it), each config (the baseline train.py; a no-op, the same code with a comment changed;
a small honest change, EMBEDDING_LR halved) and seeds 0..N-1, one run of `python train.py`
with the environment the harness gives a run of that clock. Under the steps clock the costs
travel as in a night: a config's first run (seed 0) measures its seconds per token, the no-op's
and the change's against the baseline's (OVERNIGHT_COST_REF), and every later run of it is
given its cost (OVERNIGHT_COST); each load measures its own. Each run appends one JSON line to
--out (val_bpb, steps, training and wall seconds, the costs, the load average); a run already
there is skipped, so a stopped bench resumes where it stopped. Runs are interleaved seed by
seed, so a drift of the machine spreads over every cell alike.

The table at the end (or of --out alone, with --summary): per clock x load, the unpaired sd of
the baseline's val_bpb over seeds, the paired-difference sd and mean (baseline minus no-op,
baseline minus change, seed for seed), the steps (mean and sd); then, per load, the ratio of
the paired-difference sd under each other clock to the unpaired sd under the wall clock.

Usage: python bench/clock.py --out clock.jsonl [--seeds 8] [--budget 20] [--clocks wall,cpu,tokens,steps]
                             [--loads quiet,loaded] [--configs baseline,noop,change] [--data SPEC] [--summary]
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
from overnight.run.environ import clock_env  # noqa: E402
from overnight.task import CLOCKS  # noqa: E402

LOADS = ("quiet", "loaded")
CONFIGS = ("baseline", "noop", "change")
HOG = [sys.executable, "-c", "while True: pass"]


def make_tasks(folder: Path, data: str | None) -> dict[str, Path]:
    """The cpu preset as `overnight init` writes it, and a copy with EMBEDDING_LR halved."""
    tasks = {config: make_task("cpu", data, folder / config) for config in CONFIGS}
    train = tasks["change"] / "train.py"
    source = train.read_text()
    lr = knobs.find_constants(source)["EMBEDDING_LR"].value
    train.write_text(knobs.rewrite(source, {"EMBEDDING_LR": lr / 2}))
    noop = tasks["noop"] / "train.py"
    noop.write_text(noop.read_text().replace("# number of transformer layers", "# transformer layers"))
    return tasks


def key(row: dict) -> tuple:
    return row["clock"], row["load"], row["config"], row["seed"], row["budget"]


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def costs(rows: list[dict], load: str, config: str, budget: float) -> dict:
    """The steps clock's costs for a run of `config`, as a night would give them: the cost its
    first run measured, else the baseline's as the reference."""
    first = {
        r["config"]: r
        for r in rows
        if r["clock"] == "steps" and r["load"] == load and r["budget"] == budget and r["seed"] == 0 and r.get("cost")
    }
    if config in first:
        return {"OVERNIGHT_COST": repr(first[config]["cost"])} | (
            {"OVERNIGHT_COST_REF": repr(first[config]["cost_ref"])} if first[config].get("cost_ref") else {}
        )
    if config != "baseline" and "baseline" in first:
        return {"OVERNIGHT_COST_REF": repr(first["baseline"]["cost"])}
    return {}


def one_run(task: Path, clock: str, load: str, seed: int, budget: float, extra: dict | None = None) -> dict:
    """One run under `clock`, alone or beside a competing CPU-bound process."""
    before = os.getloadavg()[0]
    hog = subprocess.Popen(HOG) if load == "loaded" else None
    try:
        r = run_once(task, budget, seed=seed, env={"OVERNIGHT_CLOCK": clock, **clock_env(clock), **(extra or {})})
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
        **{k: r[k] for k in ("cost", "cost_ref", "measured_cost", "measured_seconds") if r.get(k) is not None},
    }


def sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else math.nan


def summary(rows: list[dict], budget: float) -> None:
    rows = [r for r in rows if r["budget"] == budget]
    cells: dict[tuple, dict[str, dict[int, dict]]] = {}
    for r in rows:
        cells.setdefault((r["clock"], r["load"]), {}).setdefault(r["config"], {})[r["seed"]] = r
    print(f"\nbudget {budget:g}s | val_bpb over seeds; paired = baseline minus the config, seed for seed")
    print(
        f"{'clock':<7}{'load':<8}{'config':<10}{'n':>3}{'mean':>9}{'unpaired sd':>13}{'paired mean':>13}"
        f"{'paired sd':>11}{'steps':>8}{'steps sd':>10}{'train s':>9}{'wall s':>8}"
    )
    unpaired, paired = {}, {}
    for clock in CLOCKS:
        for load in LOADS:
            cell = cells.get((clock, load))
            if not cell:
                continue
            base = cell.get("baseline", {})
            unpaired[clock, load] = sd([r["val_bpb"] for r in base.values()])
            for config in CONFIGS:
                runs = cell.get(config, {})
                if not runs:
                    continue
                values = [r["val_bpb"] for r in runs.values()]
                diffs = [base[s]["val_bpb"] - runs[s]["val_bpb"] for s in sorted(base.keys() & runs.keys())]
                if config != "baseline":
                    paired[clock, load, config] = sd(diffs)
                steps = [r["steps"] for r in runs.values()]
                print(
                    f"{clock:<7}{load:<8}{config:<10}{len(values):>3}{statistics.mean(values):>9.4f}"
                    f"{sd(values):>13.4f}"
                    + (f"{statistics.mean(diffs):>13.4f}{sd(diffs):>11.4f}" if config != "baseline" else " " * 24)
                    + f"{statistics.mean(steps):>8.1f}{sd(steps):>10.1f}"
                    f"{statistics.mean(r['training_seconds'] for r in runs.values()):>9.1f}"
                    f"{statistics.mean(r['wall_seconds'] for r in runs.values()):>8.1f}"
                )
    for (clock, load, config), value in paired.items():
        if clock != "wall" and ("wall", load) in unpaired:
            print(
                f"{load}, {config}: paired sd under the {clock} clock / unpaired sd under the wall clock = "
                f"{value / unpaired['wall', load]:.3f} ({value:.4f} / {unpaired['wall', load]:.4f})"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="JSON lines, one per run; appended, resumed")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--budget", type=float, default=20.0, help="training seconds per run")
    ap.add_argument("--clocks", default=",".join(CLOCKS))
    ap.add_argument("--loads", default=",".join(LOADS))
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--data", default=None, help="data spec, as for `overnight init --data`")
    ap.add_argument("--summary", action="store_true", help="print the table of --out and stop")
    args = ap.parse_args()
    clocks = [c for c in args.clocks.split(",") if c]
    loads = [x for x in args.loads.split(",") if x]
    configs = [c for c in CONFIGS if c in args.configs.split(",")]
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
        for config in configs
        if (clock, load, config, seed, args.budget) not in done
    ]
    print(f"{len(plan)} runs to do, {len(done)} already in {args.out}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-clock-") as tmp:
        tasks = make_tasks(Path(tmp), args.data) if plan else {}
        for config, task in tasks.items():  # data cache and compile warm-up, outside every run
            # The tokens clock's calibration (once per machine) is the setup's, as in a night.
            env = {"OVERNIGHT_CLOCK": "tokens", "OVERNIGHT_BUDGET": f"{args.budget:g}", **clock_env("tokens")}
            env = env if "tokens" in clocks else {}
            print(f"setup {config}: {setup(task, env):.1f}s", flush=True)
        for i, (clock, load, config, seed) in enumerate(plan, 1):
            row = {"clock": clock, "load": load, "config": config, "seed": seed, "budget": args.budget}
            extra = costs(read_rows(args.out), load, config, args.budget) if clock == "steps" else {}
            row.update(one_run(tasks[config], clock, load, seed, args.budget, extra))
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
