"""The gain a candidate shows over the incumbent and its standard error, under the design the
noise judge chose (judges/paired.py): the mean of per-seed differences against the paired
noise, or the difference of means against the run noise. noise.py decides with it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from overnight.judges.paired import Design
from overnight.judges.stats import PAIRED, Noise, mean
from overnight.records import Experiment
from overnight.task import Metric


@dataclass(frozen=True)
class Gain:
    k: int  # pairs, or the candidate's runs
    raw_gain: float  # before the price of added lines
    se: float
    crit: float  # the t the gain must reach
    df: int
    over: str  # what it was measured over, for the reason
    noise_said: str  # which noise, for the reason


def measure_gain(
    judge,
    design: Design,
    pairs: list,
    values: list[float],
    inc_values: list[float],
    n_inc: int,
    noise: Noise,
    history: list[Experiment],
    metric: Metric,
    incumbent_id: int,
) -> Gain:
    """`judge`: the NoiseJudge, for its paired yardstick and its critical t."""
    if design.paired:
        pnoise = judge.yardstick(design, history)
        sd = pnoise.sd or 1e-12 * max(1.0, abs(mean(values)))  # no noise left within a seed: exact
        k = len(pairs)
        return Gain(
            k,
            mean([metric.improvement(c, i) for _, c, i in pairs]),
            sd / math.sqrt(k),
            judge.critical_t(pnoise.df, PAIRED, judge.first_run_cut(design), judge.max_runs(design), design.bound),
            pnoise.df,
            f"over {k} pair(s) with #{incumbent_id}",
            f"paired sd {pnoise.sd:.3g} (df {pnoise.df}), run sd {noise.sd:.3g} (df {noise.df}); {design.why}",
        )
    n = len(values)
    return Gain(
        n,
        metric.improvement(mean(values), mean(inc_values)),
        noise.sd * math.sqrt(1 / n + 1 / n_inc),
        judge.critical_t(noise.df, n_inc),
        noise.df,
        f"over {n} run(s) vs {len(inc_values)} of #{incumbent_id}",
        f"noise sd {noise.sd:.3g} (df {noise.df}); {design.why}",
    )
