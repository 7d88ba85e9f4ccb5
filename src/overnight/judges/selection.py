"""The winner's curse, corrected: what a kept candidate's runs really say about it.

A candidate is kept because its runs looked better than the incumbent: a change that does
nothing is kept only when its few runs happened to come out low, so a just-kept incumbent's
mean is too good, and every later candidate is judged against a bar that is too high. In
the synthetic nights of tests/judges, a 2-sd gain was kept 79 % of the time against an
unselected baseline but 60 % against a kept no-op; replacing a kept change's runs by fresh
draws (an oracle) gave back most of the loss.

The correction costs no runs. The judge's design is known exactly (screen, looks, the
boundary, futility), so the selection can be simulated: for a true gain g (in noise sds,
against the parent's mean as the judge saw it), the mean observed gain of candidates that the
design keeps at look n, E[obs | kept at n; g], rises with g and lies well above it for small
g (a large gain kept only at a late look was unlucky before, and can lie below). The
conditional moment estimate is the g~ with E[obs | kept at n; g~] = the observed gain
(approximations: the sd is taken as known, and the boundary and the incumbent's run count as
they were at the keep); the kept candidate's selected runs are
then read as if their mean were the parent's mean minus g~ (runs made after the keep are
fresh and are left alone). g~ is floored at `floor_se` standard errors below the observed
gain: near the boundary the estimate has no lower limit (any small gain could have produced
a keep just over the line), and an incumbent made to look worse than its parent would let
no-ops be kept against it.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from overnight.judges.stats import inverse, kept_at

DRAWS = 20_000


@functools.lru_cache(maxsize=64)
def _paths(max_runs: int) -> np.ndarray:
    """Cumulative sums of a candidate's standardized noise, one row per simulated candidate
    (a fixed stream: the correction is a deterministic function of the journal)."""
    return np.cumsum(np.random.default_rng(4242).standard_normal((DRAWS, max_runs)), axis=1)


def conditional_mean(
    g: float, n_keep: int, n_inc: float, crit: float, screen: float, futility: float, max_runs: int, offset: float = 0.0
) -> float | None:
    """E[observed raw gain | kept at look n_keep] for a true gain g (sd units), or None when
    the design (almost) never keeps at that look. `offset`: the line price, in sd units;
    `n_inc` stats.PAIRED: the paired design (g and the sd those of the paired differences)."""
    s = _paths(max_runs)
    ts = [(g - s[:, j - 1] / j - offset) / math.sqrt(1 / j + inverse(n_inc)) for j in range(1, max_runs + 1)]
    mask = kept_at(ts, screen, crit, futility) == n_keep
    if mask.sum() < 30:
        return None
    return float(g - s[mask, n_keep - 1].mean() / n_keep)


@functools.lru_cache(maxsize=4096)
def corrected_gain(
    observed: float,
    n_keep: int,
    n_inc: float,
    crit: float,
    screen: float,
    futility: float,
    max_runs: int,
    offset: float = 0.0,
    floor_se: float = 1.25,
) -> float:
    """The gain g~ (sd units) whose kept-at-n_keep candidates show `observed` on average."""
    if n_keep < 2 or n_keep > max_runs:
        return observed  # not kept by a confirmation look: nothing to correct
    se = math.sqrt(1 / n_keep + inverse(n_inc))
    lo, hi = observed - floor_se * se, observed + floor_se * se
    m_lo = conditional_mean(lo, n_keep, n_inc, crit, screen, futility, max_runs, offset)
    if m_lo is not None and m_lo >= observed:
        return lo  # even a gain this small would look this good when kept: the floor
    # (None: keeps at this look are too rare to simulate at the floor; as g falls, the mean of
    # those kept sinks towards the boundary, which the observed gain cleared: below observed.)
    # A large gain kept only at a late look was unlucky before: its g~ can exceed what it
    # showed (the judge never moves runs towards better, see NoiseJudge._selection_shift).
    m_hi = conditional_mean(hi, n_keep, n_inc, crit, screen, futility, max_runs, offset)
    if m_hi is not None and m_hi < observed:
        return hi
    for _ in range(30):  # E[obs | kept; g] rises with g (same draws for every g)
        mid = (lo + hi) / 2
        m = conditional_mean(mid, n_keep, n_inc, crit, screen, futility, max_runs, offset)
        if m is None or m < observed:  # None: see above
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2
