"""The smallest confirmable gain: what the noise judge would keep with 80 % probability now.

For the next candidate against the current incumbent, under the design the judge would use
(paired or unpaired, judges/paired.py), with the sd measured so far and the judge's settings
(screen, looks, futility, max_runs, the keep threshold at the current degrees of freedom), the
whole procedure is simulated for a true gain g (in sd units): P(keep | g) rises with g, and
the g where it reaches `power` is found by bisection, then given in metric units. The figure
falls as the night measures more: the sd is known better (a lower threshold on the t scale),
the incumbent has more runs, and pairs replace unpaired runs where seeds share their noise.

Approximation: each look's statistic is simulated with the sd known (the threshold on the t
scale already charges for estimating it), so the figure is a little optimistic at few df.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from overnight.judges.stats import inverse, kept_at

DRAWS = 20_000


@functools.lru_cache(maxsize=64)
def _noise(max_runs: int) -> tuple[np.ndarray, np.ndarray]:
    """(incumbent-mean errors, the candidate's cumulative noise): a fixed stream, so that the
    figure is a deterministic function of the journal."""
    rng = np.random.default_rng(2024)
    return rng.standard_normal(DRAWS), np.cumsum(rng.standard_normal((DRAWS, max_runs)), axis=1)


def keep_probability(g: float, n_incumbent: int, crit: float, screen: float, futility: float, max_runs: int) -> float:
    """P(keep) for a candidate `g` sds better (n_incumbent stats.PAIRED: the paired design, g
    and the sd those of the differences)."""
    e_inc, runs = _noise(max_runs)
    inc = inverse(n_incumbent)
    ts = [(g + runs[:, n - 1] / n + e_inc * math.sqrt(inc)) / math.sqrt(1 / n + inc) for n in range(1, max_runs + 1)]
    return float((kept_at(ts, screen, crit, futility) > 0).mean())


@functools.lru_cache(maxsize=1024)
def detectable_sds(
    n_incumbent: int, crit: float, screen: float, futility: float, max_runs: int, power: float = 0.8
) -> float:
    """The true gain, in sds, that the design keeps with probability `power`."""
    lo, hi = 0.0, 20.0
    if keep_probability(hi, n_incumbent, crit, screen, futility, max_runs) < power:
        return math.inf
    for _ in range(30):  # P(keep | g) rises with g (same draws for every g)
        mid = (lo + hi) / 2
        if keep_probability(mid, n_incumbent, crit, screen, futility, max_runs) >= power:
            hi = mid
        else:
            lo = mid
    return hi


def detectable_gain(judge, history: list, power: float = 0.8) -> tuple[float | None, object]:
    """(the gain in metric units the noise judge `judge` would keep with probability `power`
    for the next candidate against the incumbent of `history`, the paired.Design it would use),
    or (None, None) when the night has not measured its noise yet."""
    from overnight.judges.paired import choose
    from overnight.judges.pooled import noise_of, paired_noise_of
    from overnight.judges.stats import PAIRED
    from overnight.records import incumbent

    inc = incumbent(history)
    runs = judge.incumbent_runs(inc) if inc is not None else []
    noise = noise_of(history)
    if not runs or not noise.known:
        return None, None
    s = judge.s
    # The judge tops the incumbent up to incumbent_runs before it confirms a candidate.
    n_inc = max(len(runs), s.incumbent_runs)
    paired = paired_noise_of(history)
    crits = (judge.critical_t(noise.df, n_inc), judge.critical_t(paired.df, PAIRED))
    design = choose(noise, paired, n_inc, crits, s.paired_min_df, s.paired)
    sd = judge.yardstick(design, history)
    if sd.df == 0:
        return None, None
    if sd.sd == 0:
        return 0.0, design
    n_sim = PAIRED if design.paired else n_inc
    screen = judge.first_run_cut(design)
    crit = judge.critical_t(sd.df, n_sim, screen)
    sds = detectable_sds(n_sim, round(crit, 6), screen, s.futility, s.max_runs, power)
    return (sds * sd.sd if math.isfinite(sds) else None), design
