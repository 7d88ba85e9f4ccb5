"""Optuna vs random search on the toy task: how much of the gap to the known optimum is closed.

    python bench/proposers.py [--experiments 30] [--seeds 5] [--noise 0.002]

Three arms: optuna as shipped (`--knob-search local`: one constant at a time around the best
first), optuna with `--knob-search global` (TPE from the first trial) and random.

For each search seed, each proposer runs `--experiments` experiments (baseline included) with
the greedy judge and a 1 s budget; the figure is the fraction of the gap between the
baseline's true (noise-free) loss and the known optimum that the final best closes.
Target (issue 3): optuna closes >= 90 % and beats random in median.
"""

from __future__ import annotations

import argparse
import statistics
import time

from overnight.night.config import RunConfig
from overnight.night.controller import Controller
from overnight.proposers import ProposerOptions
from overnight.records import incumbent
from overnight.testing.toy import make_toy, true_loss_at


def gap_closed(arm: str, seed: int, experiments: int, noise: float) -> tuple[float, float]:
    """`arm`: optuna (its default knob search: at the incumbent first), optuna-global (TPE from
    the first trial), random."""
    root = make_toy({"TOY_NOISE": str(noise)})
    proposer = arm.split("-")[0]
    options = ProposerOptions(knob_search="global" if arm.endswith("-global") else "local")
    cfg = RunConfig(
        tag=f"{arm}-{seed}", proposer=proposer, proposer_options=options, experiments=experiments, seed=seed, budget=1
    )
    ctl = Controller(root, cfg)
    ctl.run()
    history = ctl.journal.experiments(ctl.tag)
    start, best_possible = true_loss_at(root, history[0].commit_sha)
    end, _ = true_loss_at(root, incumbent(history).commit_sha)
    return (start - end) / (start - best_possible), end


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--experiments", type=int, default=30)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--noise", type=float, default=0.002)
    args = ap.parse_args()
    results: dict[str, list[float]] = {"optuna": [], "optuna-global": [], "random": []}
    t0 = time.time()
    for seed in range(args.seeds):
        for proposer in results:
            closed, end = gap_closed(proposer, seed, args.experiments, args.noise)
            results[proposer].append(closed)
            print(f"seed {seed} {proposer:<13} gap closed {100 * closed:6.1f} %  (true loss {end:.5f})", flush=True)
    print(
        f"\ntoy task, {args.experiments} experiments, noise sd {args.noise}, {args.seeds} search seeds "
        f"({time.time() - t0:.0f} s)"
    )
    for proposer, vals in results.items():
        print(
            f"{proposer:<13} median gap closed {100 * statistics.median(vals):5.1f} %   "
            f"(min {100 * min(vals):.1f} %, max {100 * max(vals):.1f} %)"
        )


if __name__ == "__main__":
    main()
