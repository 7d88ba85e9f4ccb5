"""The night's noise, pooled: one run per seed of each experiment, the unpaired run sd and
the sd of differences seed for seed with the parent's runs (paired.py says when the judge
uses which), and the journal as it stood at a moment (what the judge saw then).

The noise model: every experiment that was run under several seeds is one group of
replicates; an sd is pooled over all groups (a weighted mean of the groups' variances,
weights = degrees of freedom), so each confirmation run sharpens it.
"""

from __future__ import annotations

from dataclasses import replace

from overnight.judges.stats import Noise, ignores_seed, pooled_sd
from overnight.records import Experiment, Run, RunStatus


def ok_runs(exp: Experiment) -> tuple[list[float], list[int]]:
    runs = [r for r in exp.runs if r.status == RunStatus.OK and r.value is not None]
    return [r.value for r in runs], [r.seed for r in runs]


def noise_of(history: list[Experiment]) -> Noise:
    """The unpaired run sd pooled over the night: each experiment's runs under two or more
    seeds (one run per seed, the latest: a repeat of a seed is not the seed's spread)."""
    groups = []
    for e in history:
        if any(r.status == RunStatus.MISMATCH for r in e.runs):
            continue  # its values were not what protected code computes (rescore-mismatch)
        runs = latest_by_seed(e.runs)
        values, seeds = [r.value for r in runs.values()], list(runs)
        if len(values) >= 2 and not ignores_seed(values, seeds):
            groups.append(values)
    return pooled_sd(groups)


def then_runs(e: Experiment, moment: float) -> list[Run]:
    return [r for r in e.runs if r.started < moment]


def before(history: list[Experiment], moment: float) -> list[Experiment]:
    """The journal as it stood at `moment`: experiments created and runs started before it."""
    return [replace(e, runs=then_runs(e, moment)) for e in history if e.created < moment]


def latest_by_seed(runs: list[Run]) -> dict[int, Run]:
    """One run per seed, the latest (a re-run of a seed is the fresher partner)."""
    out: dict[int, Run] = {}
    for r in sorted(runs, key=lambda r: r.started):
        if r.status == RunStatus.OK and r.value is not None:
            out[r.seed] = r
    return out


def differences(candidate: list[Run], incumbent: dict[int, float]) -> list[tuple[int, float, float]]:
    """(seed, candidate value, incumbent value) for each of the candidate's seeds the incumbent
    has a value for. `incumbent`: seed -> value as the judge reads it."""
    mine = latest_by_seed(candidate)
    return [(s, r.value, incumbent[s]) for s, r in sorted(mine.items()) if s in incumbent]


def paired_noise_of(history: list[Experiment], skip: set[int] = frozenset()) -> Noise:
    """The paired-difference sd pooled over the night: each experiment (not in `skip`) with two
    or more seeds shared with its parent gives one group of differences (raw values: a shift
    applied to a whole run set moves no variance)."""
    by_id = {e.id: e for e in history}
    groups = []
    for e in history:
        parent = by_id.get(e.parent_id) if e.parent_id is not None else None
        if parent is None or e.id in skip or any(r.status == RunStatus.MISMATCH for r in e.runs):
            continue
        theirs = {s: r.value for s, r in latest_by_seed(parent.runs).items()}
        pairs = differences(e.runs, theirs)
        if len(pairs) >= 2:
            groups.append([c - i for _, c, i in pairs])
    return pooled_sd(groups)
