"""Paired comparisons (common random numbers): a candidate's run and the incumbent's run
under the same seed share the data order and, where shapes agree, the initialisation.

Most of a run's noise on a small model is the seed's; the difference of two runs under one
seed carries only what is left (the repeat noise: timing, nondeterministic kernels). The
judge then tests the mean of the candidate's paired differences, whose sd is pooled over the
night like the unpaired one: every experiment with two or more seeds shared with its parent
is one group of differences.

Pairing pays when the gain a pair needs to clear the keep threshold is below what an unpaired
run needs (paired sd times its critical t, against sd * sqrt(1 + 1/m) times the unpaired
one, m incumbent runs: the critical t charges an sd measured on few pairs for its
uncertainty); on a task whose noise is all repeat a difference has sqrt(2) times the run sd,
and the unpaired test stays. The choice is made
from the noise the night had measured when the candidate's first run started, so it does not
follow the candidate's own luck. While the night has measured fewer than `paired_min_df`
degrees of freedom of pairs, a candidate is paired on its own evidence: its first run is not
screened, its sd from its second pair on is the pairs measured since it began (its own among
them: sqrt(2) run sds bound it before), it may run up to `own_evidence_runs`, and it is kept
against a boundary computed for a t on that few degrees of freedom (own_pairs_boundary) at a
share of alpha. Before issue 34 such a candidate was judged on the sqrt(2) bound alone and given
up after two pairs: the night's first ideas, a real 0.4 seed-sd gain included, were never kept.
Unpaired, every candidate's first run (under the same seed) would carry that seed's luck
alike. A candidate whose differences spread far beyond the paired
noise (its change altered what the seed controls, e.g. a new shape re-draws the
initialisation) is judged unpaired.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as _st

from overnight.judges.stats import Noise


@dataclass(frozen=True)
class Design:
    paired: bool
    why: str  # one phrase for the verdict's reason
    # paired while the night had too few pairs measured: the candidate's own pairs (and any the night
    # measured since) are its sd, sqrt(2) run sds until it has two; its own boundary (own_pairs_boundary)
    bound: bool = False


def choose(
    unpaired: Noise,
    paired: Noise,
    n_incumbent: int,
    crits: tuple[float, float],
    min_df: int = 1,
    enabled: bool = True,
) -> Design:
    """Paired when the night has measured the paired noise (at least `min_df` degrees of
    freedom) and a pair clears the keep threshold with a smaller gain than an unpaired run
    would: paired sd * its critical t below sd * sqrt(1 + 1/m) * the unpaired one's. `crits`:
    (unpaired, paired) critical t at the degrees of freedom each has, so a paired sd measured
    on few pairs pays for its uncertainty."""
    if not enabled:
        return Design(False, "unpaired (pairing off)")
    if paired.df >= 1 and paired.sd == 0:
        return Design(True, "paired (no noise left within a seed)")
    if paired.df < max(min_df, 1):
        if not unpaired.known:
            return Design(False, "unpaired (no run noise yet)")
        # Every candidate's first run is under the same seed: unpaired, that seed's luck would
        # screen every candidate alike. Paired with a bound until pairs are measured.
        return Design(True, f"paired, on its own pairs (the night's paired noise: {paired.df} df)", bound=True)
    if not unpaired.known:
        return Design(False, "unpaired (no run noise yet)")
    unpaired_bar = unpaired.sd * math.sqrt(1 + 1 / max(n_incumbent, 1)) * crits[0]
    paired_bar = paired.sd * crits[1]
    if paired_bar >= unpaired_bar:
        return Design(False, f"unpaired (a pair's bar {paired_bar:.3g} >= a run's {unpaired_bar:.3g})")
    return Design(True, "paired")


def spread_p(diffs: list[float], paired: Noise) -> float | None:
    """How likely paired differences spread at least this far under the paired noise (the
    chi-square upper tail), None under two pairs or with no paired noise."""
    if len(diffs) < 2 or paired.df == 0:
        return None
    m = sum(diffs) / len(diffs)
    ss = sum((d - m) ** 2 for d in diffs)
    if paired.sd == 0:
        return 0.0 if ss > 0 else 1.0
    return float(_st.chi2.sf(ss / paired.sd**2, len(diffs) - 1))


@functools.lru_cache(maxsize=64)
def own_pairs_boundary(alpha: float, max_runs: int, futility: float, draws: int = 200_000) -> float:
    """The constant z boundary for a candidate judged on its own pairs alone (the night had no
    paired noise when it began): at its k-th pair (k = 2..max_runs) its t has k - 1 degrees of
    freedom, read on the z scale at the same normal level (stats.z_to_t's inverse); kept at the
    first look above the boundary, stopped when t < `futility`. Computed by simulation so that
    a change that does nothing is kept with probability alpha over all looks: at one or two
    degrees of freedom t's tails are far heavier than z_to_t's level matching assumes for the
    known-sd design (sequential_boundary kept 13 % of such no-ops at alpha 5 %).
    Deterministic (fixed stream)."""
    rng = np.random.default_rng(12345)
    d = rng.standard_normal((draws, max_runs))
    total, squares = np.cumsum(d, axis=1), np.cumsum(d * d, axis=1)
    zs, ts = [], []
    for k in range(2, max_runs + 1):
        m = total[:, k - 1] / k
        var = np.maximum((squares[:, k - 1] - k * m * m) / (k - 1), 1e-300)
        t = m / np.sqrt(var / k)
        ts.append(t)
        zs.append(_st.norm.ppf(np.clip(_st.t.cdf(t, k - 1), 1e-16, 1 - 1e-16)))

    def keep_rate(c: float) -> float:
        alive = np.ones(draws, bool)
        kept = np.zeros(draws, bool)
        for z, t in zip(zs, ts):
            hit = alive & (z > c)
            kept |= hit
            alive &= ~hit & (t >= futility)
        return kept.mean()

    lo, hi = 0.0, 8.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if keep_rate(mid) > alpha else (lo, mid)
    return hi
