"""A/A on the real thing: the noise judge on the nanogpt CPU preset, slow, run once.

    python bench/judge_nanogpt.py [--trials 6] [--budget 20]

A fresh `nanogpt --preset cpu` task; the baseline runs under the judge's seeds, then each
candidate is a change that does nothing (a comment line), so every keep is a false keep.
Prints each verdict, the false-keep count, the measured noise and the runs spent. The run
is timed by the budget, so run-to-run noise includes how many steps fit in it, as in a
real night.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from overnight import gitops
from overnight.judges.noise import noise_of
from overnight.night.config import RunConfig
from overnight.night.controller import Controller
from overnight.proposers.base import Context, Proposal, Proposer
from overnight.records import ExpStatus
from overnight.tasks import write_task


class NoOp(Proposer):
    name = "no-op"

    def propose(self, ctx: Context) -> Proposal:
        n = len(ctx.history)
        text = ctx.incumbent_files["train.py"] + f"\n# no-op change {n}: changes nothing the model does\n"
        return Proposal(f"A/A no-op #{n}", {"train.py": text})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--budget", type=float, default=20)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="overnight-aa-nanogpt-"))
    write_task("nanogpt", root, "cpu", None)
    gitops.init_repo(root, "nanogpt cpu")
    t0 = time.time()
    ctl = Controller(root, RunConfig(tag="aa", experiments=args.trials + 1, budget=args.budget), proposer=NoOp())
    ctl.run()
    history = ctl.journal.experiments("aa")
    for e in history:
        print(f"#{e.id} {e.status.value:<9} runs {len(e.runs)}  {(e.reason or '')[:150]}")
    candidates = history[1:]
    kept = sum(e.status == ExpStatus.KEPT for e in candidates)
    runs = sum(len(e.runs) for e in candidates)
    noise = noise_of(history)
    print(
        f"\nnanogpt cpu preset, {args.budget:g} s budget: {kept} of {len(candidates)} no-op candidates kept; "
        f"noise sd {noise.sd:.4f} val_bpb ({noise.df} df); {runs / max(1, len(candidates)):.2f} runs per "
        f"candidate; {(time.time() - t0) / 60:.1f} min"
    )


if __name__ == "__main__":
    main()
