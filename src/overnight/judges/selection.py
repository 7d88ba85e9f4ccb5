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

from overnight.judges.pooled import before
from overnight.judges.stats import PAIRED, Noise, ignores_seed, inverse, kept_at, mean, net_added_lines
from overnight.records import Experiment, ExpStatus, RunStatus
from overnight.task import Metric

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


def selection_shift(judge, kept: Experiment, history: list[Experiment], metric: Metric) -> float:
    """How far (metric units, towards worse) `kept`'s confirmation runs are moved so that their
    mean is the conditional estimate of its true mean, given that `judge` (the NoiseJudge, for
    its design, yardstick and boundary as they were at the keep) kept it."""
    if not (
        kept.parent_id is not None
        and kept.decided
        and kept.status == ExpStatus.KEPT
        and (kept.reason or "").startswith("confirmed")
    ):
        return 0.0
    then = before(history, kept.decided)  # the journal as the judge saw it when it kept `kept`
    kept_then = next(e for e in then if e.id == kept.id)
    selected = [r for r in kept_then.runs if r.status == RunStatus.OK and r.value is not None]
    parent_then = next((e for e in then if e.id == kept.parent_id), None)
    values, seeds = [r.value for r in selected], [r.seed for r in selected]
    if parent_then is None or len(selected) < 2 or ignores_seed(values, seeds):
        return 0.0
    inc_runs = judge.incumbent_runs(parent_then, then, metric)
    n_inc = len(inc_runs)
    design, pairs = judge._design(kept_then, inc_runs, n_inc, then) if inc_runs else (None, [])
    noise = judge.yardstick(design, then) if design else Noise(0.0, 0)
    if not noise.known or design is None:
        return 0.0
    if design.paired and pairs:
        n_keep, n_inc = len(pairs), PAIRED
        gain = mean([metric.improvement(c, i) for _, c, i in pairs])
    else:
        n_keep = len(values)
        gain = metric.improvement(mean(values), mean([v for _, v in inc_runs]))
    observed = gain / noise.sd
    s = judge.s
    offset = s.line_price * max(net_added_lines(kept.diff, kept.edits), 0) / noise.sd
    cut, looks = judge.first_run_cut(design), judge.max_runs(design)
    crit = judge.critical_t(noise.df, n_inc, cut, looks, bool(design.bound))
    fair = corrected_gain(
        round(observed, 6), n_keep, n_inc, round(crit, 6), cut, s.futility, looks, round(offset, 6), s.selection_floor
    )
    # Paired, the selected luck is in the differences: half of their variance is the parent's
    # partner runs', which the kept one's runs do not carry on.
    share = 0.5 if design.paired and pairs else 1.0
    return metric.sign * max(0.0, observed - fair) * noise.sd * share
