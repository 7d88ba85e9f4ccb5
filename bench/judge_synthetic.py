"""The noise judge's error rate, power and cost on many synthetic nights, in seconds.

    python bench/judge_synthetic.py [--aa 2000] [--mix 9000] [--settled 3000] [--set k=v ...]

bench/judge.py runs the same streams through the real loop (git, subprocesses, SQLite), at
about a second per training run here: a few hundred trials, so its rates carry +-3-6 %
sampling error. This script drives the same NoiseJudge with in-memory experiments
(overnight.testing.judges.SyntheticNight: the controller's bookkeeping in miniature: baseline seeds,
incumbent top-ups, re-measures every `remeasure_every` candidates), Gaussian noise of sd 1,
so its figures are precise to a fraction of a percent. Streams as in bench/judge.py:

- A/A: nights of 50 no-op candidates. Figure: false keeps per candidate.
- mix: nights of 50; 70 % worse by 2-6 sd, 20 % no-op, 10 % better by 2 sd. Figures: power
  (keep rate of the 2-sd ones), no-ops kept, training runs per candidate (the candidate's,
  the incumbent's top-ups and re-measures; the baseline's initial seeds not).
- settled (early night): baseline, 8 no-op candidates, then the 2-sd candidate.
- simplifications (`--simpl` fresh nights each, the candidate right after the baseline): a
  no-op that deletes one blank line (must be kept at the A/A rate: blank lines are not code),
  a code removal 0.5 sd worse (kept at most alpha: the non-inferiority margin), and a code
  removal that changes nothing (how often a true simplification is kept).
`--compare` prints the row with the winner's-curse correction off as well.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # runs from a checkout without installing
from overnight.testing.judges import SyntheticNight  # noqa: E402

_Night = SyntheticNight

# One deleted blank line, and two deleted code lines, as git writes them.
BLANK_DIFF = "--- a/train.py\n+++ b/train.py\n@@ -1,3 +1,2 @@\n x = 1\n-\n y = 2\n"
CODE_DIFF = "--- a/train.py\n+++ b/train.py\n@@ -1,4 +1,2 @@\n x = 1\n-import math\n-z = 3\n y = 2\n"

from overnight.judges.noise import NoiseJudge, NoiseSettings  # noqa: E402
from overnight.records import ExpStatus  # noqa: E402

NIGHT = 50


# A pinned seed, as a proposer writes it: the read of OVERNIGHT_SEED replaced by a constant.
PIN_DIFF = (
    "--- a/train.py\n+++ b/train.py\n@@ -1,1 +1,1 @@\n"
    '-seed = int(os.environ.get("OVERNIGHT_SEED", "0"))\n+seed = 1075\n'
)


def candidate(night: SyntheticNight, gain_sd: float, diff: str = "", pinned: int | None = None) -> tuple[int, bool]:
    """Judge one candidate to the end, then re-measure the incumbent if due (as the loop does).
    Returns (training runs spent, kept)."""
    before = sum(len(e.runs) for e in night.history)
    night.candidate(gain_sd, diff, pinned)
    inc = night.incumbent
    if night.judge.remeasure_due(inc, night.history):
        night.run(inc, started=len(night.history) + 0.95)
    return sum(len(e.runs) for e in night.history) - before, night.history[-1].status == ExpStatus.KEPT


def measure(
    s: NoiseSettings,
    n_aa: int,
    n_mix: int,
    n_settled: int,
    seed: int,
    n_simpl: int = 0,
    sd_seed: float = 0.0,
    n_lucky: int = 0,
) -> dict[str, float]:
    rng = random.Random(seed)

    def SyntheticNight(judge, rng, sd):  # noqa: N802 - every night here with the seed component
        return _Night(judge, rng, sd, sd_seed=sd_seed)

    false_keeps = 0
    for _ in range(n_aa // NIGHT):
        night = SyntheticNight(NoiseJudge(s), rng, 1.0)
        false_keeps += sum(candidate(night, 0.0)[1] for _ in range(NIGHT))
    runs = better = better_kept = neutral = neutral_kept = 0
    for _ in range(n_mix // NIGHT):
        night = SyntheticNight(NoiseJudge(s), rng, 1.0)
        for _ in range(NIGHT):
            u = rng.random()
            gain = -rng.uniform(2, 6) if u < 0.7 else 0.0 if u < 0.9 else 2.0
            spent, kept = candidate(night, gain)
            runs += spent
            better += gain == 2.0
            better_kept += kept and gain == 2.0
            neutral += gain == 0.0
            neutral_kept += kept and gain == 0.0
    settled = 0
    for _ in range(n_settled):
        night = SyntheticNight(NoiseJudge(s), rng, 1.0)
        for _ in range(8):
            candidate(night, 0.0)
        settled += candidate(night, 2.0)[1]
    simpl = {"blank_noop": 0, "worse_half_sd": 0, "code_noop": 0}
    for _ in range(n_simpl):
        for key, gain, diff in (
            ("blank_noop", 0.0, BLANK_DIFF),
            ("worse_half_sd", -0.5, CODE_DIFF),
            ("code_noop", 0.0, CODE_DIFF),
        ):
            night = SyntheticNight(NoiseJudge(s), rng, 1.0)
            night.candidate(gain, diff)
            simpl[key] += night.history[-1].status == ExpStatus.KEPT
    # The lucky seed (autoresearch's "seed 42 -> 137"): a no-op whose every run is under the
    # luckiest of 50 seeds, after 8 no-ops settled the noise; with the pinning diff, and with
    # none (a pin the diff does not show: only its runs can give it away).
    lucky = {"lucky_diff": 0, "lucky_values": 0}
    for _ in range(n_lucky):
        for key, diff in (("lucky_diff", PIN_DIFF), ("lucky_values", "")):
            night = SyntheticNight(NoiseJudge(s), rng, 1.0)
            for _ in range(8):
                candidate(night, 0.0)
            lucky[key] += candidate(night, 0.0, diff, pinned=night.lucky_seed())[1]
    n_mix = n_mix // NIGHT * NIGHT
    return {
        **{k: v / max(1, n_lucky) for k, v in lucky.items()},
        **{k: v / max(1, n_simpl) for k, v in simpl.items()},
        "aa": false_keeps / max(1, n_aa // NIGHT * NIGHT),
        "power_mix": better_kept / max(1, better),
        "power_settled": settled / max(1, n_settled),
        "neutral": neutral_kept / max(1, neutral),
        "runs": runs / max(1, n_mix),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--aa", type=int, default=2000)
    ap.add_argument("--mix", type=int, default=9000)
    ap.add_argument("--settled", type=int, default=3000)
    ap.add_argument("--simpl", type=int, default=2000, help="fresh nights per simplification case")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--compare", action="store_true", help="also without the winner's-curse correction")
    ap.add_argument("--sd-seed", type=float, default=0.0, help="noise of the seed, shared by all (repeat noise: 1)")
    ap.add_argument("--lucky", type=int, default=0, help="nights with a lucky-seed candidate, each way")
    ap.add_argument("--unpaired", action="store_true", help="also with pairing off (the design before)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a NoiseSettings field, e.g. --set max_runs=5",
    )
    args = ap.parse_args()
    base = replace(
        NoiseSettings(),
        **{k: type(getattr(NoiseSettings(), k))(eval(v)) for k, v in (item.split("=", 1) for item in args.set)},
    )
    rows = [("noise", base)] + ([("no correction", replace(base, correct_selection=False))] if args.compare else [])
    rows += [("unpaired", replace(base, paired=False))] if args.unpaired else []
    print(
        f"synthetic nights, Gaussian noise: repeat sd 1, seed sd {args.sd_seed:g} (gains in repeat sds); "
        f"A/A {args.aa}, mix {args.mix}, settled {args.settled}, simplifications {args.simpl}, "
        f"lucky {args.lucky}; {base}"
    )
    print(
        f"{'judge':<15}{'A/A false keeps':>17}{'power in mix':>14}{'power settled':>15}{'no-op kept (mix)':>18}"
        f"{'runs/candidate':>16}{'time':>7}"
    )
    for name, s in rows:
        t0 = time.time()
        r = measure(s, args.aa, args.mix, args.settled, args.seed, args.simpl, args.sd_seed, args.lucky)
        print(
            f"{name:<15}{100 * r['aa']:>16.2f}%{100 * r['power_mix']:>13.1f}%{100 * r['power_settled']:>14.1f}%"
            f"{100 * r['neutral']:>17.1f}%{r['runs']:>16.3f}{time.time() - t0:>6.0f}s",
            flush=True,
        )
        if args.lucky:
            print(
                f"{'':<15}lucky-seed no-op kept: pinned by its diff {100 * r['lucky_diff']:.1f}%, "
                f"pinned where the diff does not show it {100 * r['lucky_values']:.1f}% ({args.lucky} each)",
                flush=True,
            )
        if args.simpl:
            print(
                f"{'':<15}simplifications kept: no-op deleting a blank line {100 * r['blank_noop']:.1f}%, "
                f"code removal 0.5 sd worse {100 * r['worse_half_sd']:.1f}%, "
                f"code removal changing nothing {100 * r['code_noop']:.1f}%",
                flush=True,
            )


if __name__ == "__main__":
    main()
