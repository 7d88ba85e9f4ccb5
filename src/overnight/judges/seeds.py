"""A candidate that ignores OVERNIGHT_SEED is never kept.

The seed drives a run's initialisation and data order; the judge's noise is measured over
seeds. A candidate that pins the seed to a lucky constant (autoresearch's "seed 42 -> 137")
gains what one seed's luck gives, on every run: repetition cannot average it away, and the
gain does not carry over to the next change. So, when the incumbent's runs vary with the seed:

- its change edits or removes a read of OVERNIGHT_SEED (a removed line naming it that the
  change does not add back unchanged, e.g. `seed = int(os.environ.get("OVERNIGHT_SEED", "0"))`
  -> `seed = 1075`), sets it (`os.environ["OVERNIGHT_SEED"] = "0"`) or seeds with a number
  (`torch.manual_seed(1075)`, `SEED = 137`): discarded at once, whatever its runs say;
- its runs under different seeds agree far more closely than the night's noise allows: the
  chi-square lower tail of its own spread against the noise measured on the other
  experiments is below `p` (a pinned seed plus a 1e-9 jitter is caught at two runs; an
  honest candidate is discarded so with probability `p`).

Not caught for sure: a pin its diff does not show (a seed computed, or read from a file) whose
runs vary by noise of their own: where the seed's share of the noise is large, its paired
differences spread beyond the paired noise and it is judged unpaired, where its one seed's luck
can still pass (bench/judge_synthetic.py --lucky measures how often).
"""

from __future__ import annotations

import re

from scipy import stats as _st

from overnight.judges.stats import Noise

SEED_VAR = "OVERNIGHT_SEED"


# An added line that sets the variable for the rest of the process (os.environ[...] = ...,
# setdefault, putenv): the run then trains under that seed whatever the harness gave it.
_WRITES = re.compile(rf"""{SEED_VAR}['"]\s*\]\s*=(?!=)|(setdefault|putenv)\(\s*['"]{SEED_VAR}""")
# An added line that seeds with a number: `torch.manual_seed(1075)`, `SEED = 137`,
# `np.random.seed(0)`, `seed=42` in a call. An honest change has no reason to add one.
_CONSTANT_SEED = re.compile(r"""\b\w*seed\w*\s*(\(\s*|=(?!=)\s*)[-+]?\d""", re.IGNORECASE)


def seed_read_changed(diff: str | None) -> str | None:
    """The first line of the change that pins the seed, or None: a removed line naming
    OVERNIGHT_SEED that the change does not add back unchanged (a moved line is not a
    change), an added line that sets OVERNIGHT_SEED, or one that seeds with a number."""
    removed, added = [], []
    for line in (diff or "").splitlines():
        if line.startswith(("--- ", "+++ ")):
            continue
        if line.startswith("-"):
            removed.append(line[1:].strip())
        elif line.startswith("+"):
            added.append(line[1:].strip())
    kept = set(added)
    changed = (text for text in removed if SEED_VAR in text and text not in kept)
    pins = (text for text in added if _WRITES.search(text) or _CONSTANT_SEED.search(text.split("#")[0]))
    return next(changed, None) or next(pins, None)


def steady_p(values: list[float], seeds: list[int], noise: Noise) -> float | None:
    """How likely runs that use the seed would agree at least this closely: the chi-square
    lower tail of the runs' spread (one value per seed) against `noise`. None when it cannot
    be said (fewer than two seeds, or no noise measured)."""
    by_seed: dict[int, float] = {}
    for v, s in zip(values, seeds):
        by_seed[s] = v  # the latest run of a seed: repeats of one seed are not its spread
    if len(by_seed) < 2 or not noise.known:
        return None
    xs = list(by_seed.values())
    m = sum(xs) / len(xs)
    ss = sum((x - m) ** 2 for x in xs)
    return float(_st.chi2.cdf(ss / noise.sd**2, len(xs) - 1))


def ignores_seed_why(diff: str | None, values: list[float], seeds: list[int], others: Noise, p: float) -> str | None:
    """Why the candidate counts as ignoring OVERNIGHT_SEED, or None. `others`: the noise
    measured on the night's other experiments (the incumbent's seeds among them)."""
    line = seed_read_changed(diff)
    if line is not None:
        return f"its change pins {SEED_VAR} (`{line[:80]}`)"
    if not others.known:
        return None  # nothing varies with the seed yet (a deterministic task): nothing to compare
    distinct = len(set(seeds))
    if distinct >= 2 and max(values) == min(values):
        return f"identical values under {distinct} seeds"
    q = steady_p(values, seeds, others)
    if q is not None and q < p:
        return (
            f"its runs under {distinct} seeds agree more closely than the night's noise allows "
            f"(sd {others.sd:.3g}; chance {q:.1e} < {p:g})"
        )
    return None
