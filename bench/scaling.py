"""Scaling: duty cycle of one slot, and experiments per hour with 1, 2, 4 local slots and on a
3-node local Ray cluster, on the toy task whose run sleeps for its whole budget.

    python bench/scaling.py [--duty-experiments 16] [--rounds 20] [--budget 4] [--no-ray]

Duty cycle = training seconds (what the task reports) / wall seconds of the whole night,
baseline and the first proposal included, at a 10 s budget with a proposer that takes 2 s
per proposal (random search behind a sleep). Experiments per hour = finished experiments /
wall seconds from the first candidate's start to the last decision (the baseline, one run
while the other slots wait, is left out), with an instant proposer and the greedy judge
(one run per candidate); every config runs `rounds` experiments per slot. The start-up before
the baseline's run (loading the task; on Ray connecting, sweeping and warming one worker per
slot) is printed beside each figure, outside it.
"""

from __future__ import annotations

import argparse
import time

from overnight.night.config import RunConfig
from overnight.night.controller import Controller
from overnight.proposers.random import RandomProposer
from overnight.testing.toy import make_toy


class SlowRandom(RandomProposer):
    """Random search that thinks for `seconds` per proposal, like an LLM call."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    def propose(self, ctx):
        time.sleep(self.seconds)
        return super().propose(ctx)


def duty_cycle(experiments: int, budget: float, think: float) -> tuple[float, float]:
    root = make_toy({"TOY_SLEEP": "budget"}, budget=budget)
    c = Controller(
        root, RunConfig(tag="duty", judge="greedy", experiments=experiments, slots=1), proposer=SlowRandom(think)
    )
    t = time.monotonic()
    c.run()
    wall = time.monotonic() - t
    runs = [r for e in c.journal.experiments("duty") for r in e.runs]
    return sum(r.training_seconds for r in runs) / wall, wall


def throughput(slots: int, rounds: int, budget: float, executor: str = "local", address: str | None = None):
    root = make_toy({"TOY_SLEEP": "budget"}, budget=budget)
    cfg = RunConfig(
        tag="rate",
        proposer="random",
        judge="greedy",
        experiments=1 + rounds * slots,
        slots=slots,
        executor=executor,
        ray_address=address,
    )
    began = time.time()
    c = Controller(root, cfg)
    c.run()
    h = c.journal.experiments("rate")
    cands = [e for e in h if e.parent_id is not None]
    start = min(r.started for e in cands for r in e.runs)
    end = max(e.decided for e in h)
    setup = min(r.started for e in h for r in e.runs) - began  # connecting, warming Ray's workers
    return len(cands) / (end - start) * 3600, len(cands), setup


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duty-experiments", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--budget", type=float, default=4.0, help="budget of the throughput runs (s)")
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    duty, wall = duty_cycle(args.duty_experiments, 10.0, 2.0)
    print(
        f"duty cycle, 1 slot, 10 s budget, 2 s proposals: {100 * duty:.1f} % "
        f"({args.duty_experiments} experiments in {wall:.0f} s; target >= 97 %)",
        flush=True,
    )
    one = None
    for n in (1, 2, 4):
        rate, count, setup = throughput(n, args.rounds, args.budget)
        one = one or rate
        print(
            f"local, {n} slot(s): {rate:.0f} experiments/hour ({count} candidates, {args.budget:g} s budget) "
            f"= {rate / one:.2f} x one slot (target >= {0.9 * n:.1f}); start-up {setup:.1f} s",
            flush=True,
        )
    if not args.no_ray:
        import ray
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        try:
            rate, count, setup = throughput(3, args.rounds, args.budget, "ray", cluster.address)
        finally:
            if ray.is_initialized():
                ray.shutdown()
            cluster.shutdown()
        print(
            f"ray, 3-node local cluster (3 slots): {rate:.0f} experiments/hour ({count} candidates) "
            f"= {rate / one:.2f} x one local slot (target >= 2.7); start-up {setup:.1f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
