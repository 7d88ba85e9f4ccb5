"""Is a real gain kept at the start of a night as often as later? The noise judge on a task whose
noise is mostly the seed's.

    python bench/judge_early.py [--nights 400] [--set k=v ...]

The task: every run under one seed shares a seed effect of sd `--seed-sd` (data order,
initialisation: 10 run sds by default) and has its own noise of sd 1 (the issue's synthetic
task: 0.01 and 0.001 val_bpb). The candidate is better by `--gain` seed sds (0.4: 4 run sds).
Nights (overnight.testing.judges.SyntheticNight: the controller's bookkeeping in miniature):

- first: the baseline's seeds, then the gain as the night's first candidate (and, on a night of
  its own, a no-op as the first: a false keep judged on the candidate's own pairs alone);
- tenth: the baseline, nine candidates that change nothing, then the gain;
- A/A: the baseline and 20 candidates that change nothing (every keep is false), `--aa-nights`
  of them: their false keeps by position in the night as well.

Prints the keep rate of the gain first and tenth (with its binomial sd), the false-keep rate per
no-op candidate, the runs per candidate (its own and the incumbent's top-ups for it), and the
baseline's seeds before the first candidate. `--set` changes NoiseSettings fields (e.g.
`--set own_evidence_runs=4 baseline_runs=8` for the judge before issue 34).
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from dataclasses import fields, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # runs from a checkout without installing
from overnight.judges.noise import NoiseJudge, NoiseSettings  # noqa: E402
from overnight.records import ExpStatus  # noqa: E402
from overnight.testing.judges import SyntheticNight  # noqa: E402


def runs_of(night: SyntheticNight) -> int:
    return sum(len(e.runs) for e in night.history)


def one(night: SyntheticNight, gain: float) -> tuple[bool, int]:
    """Judge one candidate `gain` run sds better; (kept, runs it cost: its own and its partners')."""
    before = runs_of(night)
    night.candidate(gain)
    return night.history[-1].status == ExpStatus.KEPT, runs_of(night) - before


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nights", type=int, default=400)
    ap.add_argument("--seed-sd", type=float, default=10.0, help="the seed effect's sd, in run sds")
    ap.add_argument("--gain", type=float, default=0.4, help="the true gain, in seed sds")
    ap.add_argument("--aa", type=int, default=20, help="no-op candidates per A/A night")
    ap.add_argument("--aa-nights", type=int, default=0, help="A/A nights (default: a quarter of --nights)")
    ap.add_argument("--set", nargs="*", default=[], metavar="K=V")
    args = ap.parse_args()
    settings = NoiseSettings()
    types = {f.name: f.type for f in fields(NoiseSettings)}
    for kv in args.set:
        k, v = kv.split("=", 1)
        cast = {"int": int, "float": float, "bool": lambda x: x.lower() in ("1", "true")}[str(types[k])]
        settings = replace(settings, **{k: cast(v)})
    gain = args.gain * args.seed_sd
    rng = random.Random(1)
    kept = {"first": 0, "tenth": 0, "no-op first": 0}
    cost = {"first": 0, "tenth": 0, "no-op first": 0}
    noop_kept = noop_n = noop_runs = 0
    for _ in range(args.nights):
        night = SyntheticNight(NoiseJudge(settings), rng, 1.0, sd_seed=args.seed_sd)
        k, c = one(night, gain)
        kept["first"] += k
        cost["first"] += c
        night = SyntheticNight(NoiseJudge(settings), rng, 1.0, sd_seed=args.seed_sd)
        k, c = one(night, 0.0)  # a change that does nothing, judged while the night knows no pairs
        kept["no-op first"] += k
        cost["no-op first"] += c
        night = SyntheticNight(NoiseJudge(settings), rng, 1.0, sd_seed=args.seed_sd)
        for _ in range(9):
            k0, c0 = one(night, 0.0)
            noop_kept += k0
            noop_n += 1
            noop_runs += c0
        k, c = one(night, gain)
        kept["tenth"] += k
        cost["tenth"] += c
    aa_kept = aa_n = aa_runs = 0
    by_position = [0] * args.aa
    for _ in range(max(1, args.aa_nights or args.nights // 4)):
        night = SyntheticNight(NoiseJudge(settings), rng, 1.0, sd_seed=args.seed_sd)
        for i in range(args.aa):
            k0, c0 = one(night, 0.0)
            aa_kept += k0
            aa_n += 1
            aa_runs += c0
            by_position[i] += k0
    n = args.nights
    print(f"settings: {', '.join(args.set) or 'defaults'}; baseline seeds {settings.baseline_runs}")
    for where in ("first", "tenth", "no-op first"):
        p = kept[where] / n
        what = "a no-op as the first candidate" if where == "no-op first" else f"the {where} candidate"
        print(
            f"gain of {args.gain if where != 'no-op first' else 0:g} seed sd as {what}: kept {100 * p:.1f} % "
            f"(+-{100 * math.sqrt(p * (1 - p) / n):.1f}), {cost[where] / n:.2f} runs"
        )
    print(f"A/A nights: {aa_n // args.aa} of {args.aa} no-ops, false keeps by position: {by_position}")
    print(
        f"no-op candidates: kept {100 * (noop_kept + aa_kept) / (noop_n + aa_n):.2f} % of {noop_n + aa_n} "
        f"(A/A nights alone {100 * aa_kept / aa_n:.2f} %), {(noop_runs + aa_runs) / (noop_n + aa_n):.2f} runs each"
    )


if __name__ == "__main__":
    main()
