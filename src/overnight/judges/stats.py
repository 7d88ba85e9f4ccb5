"""Small statistics for the judges: pooled noise, t quantiles, line counts.

The noise model: every experiment that was run under several seeds is one group of
replicates; the noise standard deviation is pooled over all groups (a weighted mean of the
groups' variances, weights = degrees of freedom), so each confirmation run sharpens it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as _st


@dataclass(frozen=True)
class Noise:
    sd: float  # pooled standard deviation of one run's metric
    df: int  # degrees of freedom behind it (0: unknown)

    @property
    def known(self) -> bool:
        return self.df > 0 and self.sd > 0


def pooled_sd(groups: list[list[float]]) -> Noise:
    ss, df = 0.0, 0
    for values in groups:
        n = len(values)
        if n < 2:
            continue
        mean = sum(values) / n
        ss += sum((v - mean) ** 2 for v in values)
        df += n - 1
    return Noise(math.sqrt(ss / df) if df else 0.0, df)


def t_quantile(p: float, df: int) -> float:
    return float(_st.t.ppf(p, df)) if df > 0 else math.inf


@functools.lru_cache(maxsize=256)
def sequential_boundary(alpha: float, n_incumbent: int, max_runs: int, screen: float, futility: float,
                        draws: int = 100_000) -> float:
    """The constant z boundary c for looks at 2..max_runs candidate runs such that a change
    that does nothing is kept with probability alpha, given the screen at run 1 and the
    futility stop (a Pocock-type group-sequential boundary, computed by simulation because the
    screen and the futility stop change the null distribution). Deterministic (fixed stream)."""
    rng = np.random.default_rng(12345)
    e_inc = rng.standard_normal(draws) / math.sqrt(n_incumbent)  # error of the incumbent's mean
    runs = np.cumsum(rng.standard_normal((draws, max_runs)), axis=1)  # candidate's noise, summed
    ts = [(runs[:, n - 1] / n + e_inc) / math.sqrt(1 / n + 1 / n_incumbent) for n in range(1, max_runs + 1)]

    def keep_rate(c: float) -> float:
        alive = ts[0] >= screen
        kept = np.zeros(draws, bool)
        for t in ts[1:]:
            hit = alive & (t > c)
            kept |= hit
            alive &= ~hit & (t >= futility)
        return kept.mean()

    lo, hi = 0.0, 6.0
    for _ in range(40):  # bisection: keep_rate falls as c rises (same draws for every c)
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if keep_rate(mid) > alpha else (lo, mid)
    return hi


def z_to_t(z: float, df: int) -> float:
    """The t quantile at the level where the standard normal has quantile z (for estimated sd)."""
    return float(_st.t.ppf(_st.norm.cdf(z), df)) if df > 0 else math.inf


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def paired_interval(a: list[float], b: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """mean(a - b) over runs paired by seed, with a two-sided t confidence interval:
    (diff, low, high). Pairing by seed removes what two configurations share under one seed."""
    d = [x - y for x, y in zip(a, b)]
    diff = mean(d)
    if len(d) < 2:
        return diff, -math.inf, math.inf
    half = t_quantile(0.5 + level / 2, len(d) - 1) * math.sqrt(_var(d) / len(d))
    return diff, diff - half, diff + half


def _var(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    m = mean(values)
    return sum((v - m) ** 2 for v in values) / (len(values) - 1)


def net_added_lines(diff: str | None) -> int:
    """Lines added minus lines removed in a unified diff (file headers excluded)."""
    added = removed = 0
    for line in (diff or "").splitlines():
        if line.startswith("+") and not line.startswith("+++"):
            added += 1
        elif line.startswith("-") and not line.startswith("---"):
            removed += 1
    return added - removed


def ignores_seed(values: list[float], seeds: list[int]) -> bool:
    """Identical values under two or more different seeds: the candidate does not use the seed."""
    return len(set(seeds)) >= 2 and len(values) >= 2 and max(values) == min(values)
