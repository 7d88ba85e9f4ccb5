"""A/A on the real thing: the noise judge on the nanogpt CPU preset through the real loop.

    python bench/judge_nanogpt.py --root DIR [--trials 20] [--budget 20] [--clock steps]

A `nanogpt --preset cpu` task in DIR (written on the first call, with `[task] clock` set to
--clock); the baseline runs under the judge's seeds, then each candidate is a change that does
nothing (a comment line), so every keep is a false keep. The night is an ordinary tag of DIR:
run the same command again and it resumes where it stopped (a finished night only prints).

Prints each verdict, the false keeps, the night's noise (unpaired sd, paired-difference sd, the
design the judge chose), the runs per candidate and the detectable gain (the gain the judge
would keep with 80 % probability, `status --json` detectable_gain) under the paired design the
judge uses by default and under the unpaired design (`paired = false`, the judge before issue
15), both read off this night's runs. Runs are timed by the task's clock, so under the wall
clock the noise includes how many steps fit in the budget, as in a real night.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from task_throughput import cpu_line  # noqa: E402

from overnight import gitops  # noqa: E402
from overnight.journal import Journal  # noqa: E402
from overnight.judges.noise import NoiseJudge, NoiseSettings  # noqa: E402
from overnight.judges.pooled import noise_of, paired_noise_of  # noqa: E402
from overnight.judges.power import detectable_gain, detectable_sds  # noqa: E402
from overnight.judges.stats import PAIRED  # noqa: E402
from overnight.layout import journal_path  # noqa: E402
from overnight.night.config import RunConfig  # noqa: E402
from overnight.night.controller import Controller  # noqa: E402
from overnight.proposers.base import Context, Proposal, Proposer  # noqa: E402
from overnight.records import ExpStatus  # noqa: E402
from overnight.task import CLOCKS  # noqa: E402
from overnight.tasks import write_task  # noqa: E402

TAG = "aa"


class NoOp(Proposer):
    name = "no-op"

    def propose(self, ctx: Context) -> Proposal:
        n = len(ctx.history)
        text = ctx.incumbent_files["train.py"] + f"\n# no-op change {n}: changes nothing the model does\n"
        return Proposal(f"A/A no-op #{n}", {"train.py": text})


def make_task(root: Path, clock: str) -> None:
    write_task("nanogpt", root, "cpu", None)
    toml = root / "overnight.toml"
    toml.write_text(re.sub(r'(?m)^(clock\s*=\s*)"\w+"', rf'\g<1>"{clock}"', toml.read_text()))
    gitops.init_repo(root, f"nanogpt cpu, {clock} clock")


def report(root: Path, budget: float) -> None:
    history = Journal(journal_path(root)).experiments(TAG)
    for e in history:
        values = " ".join(f"{r.seed}:{r.value:.4f}" for r in e.runs if r.value is not None)
        print(f"#{e.id} {e.status.value:<9} runs {len(e.runs)} [{values}]  {(e.reason or '')[:140]}")
    candidates = [e for e in history[1:] if e.status in (ExpStatus.KEPT, ExpStatus.DISCARDED)]
    kept = sum(e.status == ExpStatus.KEPT for e in candidates)
    runs = sum(len(e.runs) for e in candidates)
    noise, paired = noise_of(history), paired_noise_of(history)
    gains = {}
    for name, settings in (("paired (default)", NoiseSettings()), ("unpaired", NoiseSettings(paired=False))):
        gains[name] = detectable_gain(NoiseJudge(settings), history)
    print(
        f"\nnanogpt cpu preset, {budget:g} s budget: {kept} of {len(candidates)} no-op candidates kept; "
        f"{runs / max(1, len(candidates)):.2f} runs per candidate\n"
        f"noise: unpaired sd {noise.sd:.4f} ({noise.df} df), paired-difference sd {paired.sd:.4f} ({paired.df} df)"
    )
    for name, (gain, design) in gains.items():
        shown = f"{gain:.4f}" if gain is not None else "not known yet"
        why = f" — {design.why}" if design is not None else ""
        print(f"detectable gain at 80 % power, {name} judge: {shown} val_bpb{why}")


def gain_for(sd: float, paired: bool, df: int = 30) -> float:
    """The gain the default judge keeps with 80 % probability when its sd is `sd` (paired: the
    sd of a difference under one seed; unpaired: of one run) with `df` degrees of freedom."""
    judge = NoiseJudge(NoiseSettings(paired=paired))
    s = judge.s
    n = PAIRED if paired else s.incumbent_runs
    crit = judge.critical_t(df, n, s.screen)
    return sd * detectable_sds(n, round(crit, 6), s.screen, s.futility, s.max_runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, required=True, help="the task's folder: written once, then resumed")
    ap.add_argument("--trials", type=int, default=20, help="no-op candidates")
    ap.add_argument("--budget", type=float, default=20)
    ap.add_argument("--clock", default="steps", choices=CLOCKS)
    ap.add_argument(
        "--sd",
        nargs=2,
        type=float,
        metavar=("PAIRED", "UNPAIRED"),
        help="also print the detectable gain for these sds (e.g. bench/clock.py's paired sd of a real change "
        "under the tokens clock and the unpaired sd under the wall clock): a no-op's differences carry "
        "none of a real change's seed x change interaction",
    )
    args = ap.parse_args()
    if args.sd:
        paired, unpaired = args.sd
        print(f"detectable gain at 80 % power for a paired sd {paired:g}: {gain_for(paired, True):.4f}")
        print(f"detectable gain at 80 % power for an unpaired sd {unpaired:g}: {gain_for(unpaired, False):.4f}")
        if not args.root.exists():
            return
    print(f"cpu: {cpu_line()}", flush=True)
    if not (args.root / "overnight.toml").exists():
        args.root.mkdir(parents=True, exist_ok=True)
        make_task(args.root, args.clock)
    t0 = time.time()
    cfg = RunConfig(tag=TAG, experiments=args.trials + 1, budget=args.budget)
    Controller(args.root, cfg, proposer=NoOp()).run()
    report(args.root, args.budget)
    print(f"{(time.time() - t0) / 60:.1f} min this call")


if __name__ == "__main__":
    main()
