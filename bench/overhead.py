"""The harness's own overhead per experiment on the toy task (target < 0.5 s).

    python bench/overhead.py [--experiments 40] [--repeats 3]

Overhead = (controller wall time - the candidate processes' own wall time) / experiments:
everything the harness adds around a run (proposal, commit, worktree, process start and
reaping, journal writes, results.tsv). A breakdown by part comes from timing wrappers put
around the harness's functions for the measurement.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

from overnight import gitops
from overnight.journal import Journal
from overnight.night.config import RunConfig
from overnight.night.controller import Controller
from overnight.testing.toy import make_toy

PARTS = defaultdict(float)


def _timed(owner, name: str, label: str) -> None:
    fn = getattr(owner, name)

    def wrapper(*a, **kw):
        t = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            PARTS[label] += time.perf_counter() - t

    setattr(owner, name, wrapper)


def measure(proposer: str, experiments: int) -> tuple[float, float]:
    root = make_toy({"TOY_NOISE": "0.002", "TOY_SLEEP": "0"})
    ctl = Controller(root, RunConfig(tag="bench", proposer=proposer, experiments=experiments, budget=1))
    t = time.perf_counter()
    ctl.run()
    total = time.perf_counter() - t
    runs = [r for e in ctl.journal.experiments("bench") for r in e.runs]
    process = sum(r.wall_seconds for r in runs)
    return (total - process) / experiments, process / experiments


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--experiments", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    for owner, name, label in [
        (gitops, "make_commit", "commit"),
        (gitops, "worktree_add", "worktree add"),
        (gitops, "worktree_remove", "worktree remove"),
        (gitops, "diff", "diff"),
        (gitops, "update_ref", "refs"),
        (Journal, "write_results_tsv", "results.tsv"),
    ]:
        _timed(owner, name, label)
    for proposer in ("random", "optuna"):
        PARTS.clear()
        overheads, process = [], []
        for _ in range(args.repeats):
            o, p = measure(proposer, args.experiments)
            overheads.append(o)
            process.append(p)
        n = args.experiments * args.repeats
        parts = ", ".join(f"{k} {1000 * v / n:.0f} ms" for k, v in sorted(PARTS.items(), key=lambda kv: -kv[1]))
        print(
            f"{proposer:<7} overhead per experiment: median {1000 * statistics.median(overheads):.0f} ms "
            f"(runs of {args.repeats}x{args.experiments}; "
            f"candidate process itself {1000 * statistics.median(process):.0f} ms)"
        )
        print(f"        of which: {parts}")


if __name__ == "__main__":
    main()
