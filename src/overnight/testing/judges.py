"""Journal objects without a journal: Experiments and Runs built from a seeded random stream,
judged until decided (`decide`, any judge; `SyntheticNight`, the noise judge's bookkeeping in
miniature), and an independent reading of the noise judge's rules to check it against.

The reference below is written from the NoiseJudge docstring (screen, sequential confirmation
against a constant group-sequential boundary moved to the t scale, futility, max_runs), with
its own pooling, means and t statistic. The boundary itself comes from
`stats.sequential_boundary`, which tests/judges/test_noise.py checks on its own (an independent
simulation of the same design must keep a no-op at rate alpha there).
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import replace

from scipy.stats import chi2, norm
from scipy.stats import t as student_t

from overnight.judges.noise import UNDECIDED, NoiseJudge, NoiseSettings
from overnight.judges.paired import own_pairs_boundary
from overnight.judges.stats import net_added_lines, sequential_boundary
from overnight.records import Experiment, ExpStatus, Run, VerdictAction
from overnight.task import Metric

METRIC = Metric("loss", "minimize")


def experiment(
    exp_id: int,
    parent_id: int | None,
    values=(),
    seeds=None,
    diff: str = "",
    status: ExpStatus = ExpStatus.RUNNING,
    decided: float | None = None,
) -> Experiment:
    exp = Experiment(
        id=exp_id,
        tag="t",
        parent_id=parent_id,
        base_commit="0" * 40,
        commit_sha="1" * 40,
        edits={},
        diff=diff,
        description=f"#{exp_id}",
        proposer="test",
        params={},
        status=status,
        reason=None,
        value=None,
        created=float(exp_id),
        updated=float(exp_id),
        decided=decided,
    )
    for i, v in enumerate(values):
        add_run(exp, v, seed=i if seeds is None else seeds[i])
    return exp


def add_run(exp: Experiment, value: float, seed: int | None = None, started: float | None = None) -> None:
    seed = len(exp.runs) if seed is None else seed
    started = started if started is not None else exp.created + len(exp.runs) / 100
    exp.runs.append(
        Run(
            id=1000 * exp.id + len(exp.runs),
            experiment_id=exp.id,
            seed=seed,
            status="ok",
            started=started,
            ended=started,
            value=value,
        )
    )


def diff_with(added: int, removed: int) -> str:
    """A unified diff of train.py with that many added and removed lines."""
    lines = ["--- a/train.py", "+++ b/train.py", "@@ -1,1 +1,1 @@"]
    lines += [f"-old line {i}" for i in range(removed)] + [f"+new line {i}" for i in range(added)]
    return "\n".join(lines) + "\n"


# --- the reference ------------------------------------------------------------------------


def critical_t(s: NoiseSettings, n_incumbent: int, df: int) -> float:
    """The keep threshold on the t scale: the z boundary's normal level, as a t quantile."""
    z = sequential_boundary(s.alpha, n_incumbent, s.max_runs, s.screen, s.futility)
    return float(student_t.ppf(norm.cdf(z), df))


def reference(
    cand: list[float],
    inc: list[float],
    groups: list[list[float]],
    s: NoiseSettings,
    lines: int = 0,
    pairing: tuple[list[list[float]], list[list[float]], list[list[float]], list[float]] | None = None,
) -> str:
    """The decision the docstrings (judges/noise.py, judges/paired.py) describe, as a label:
    screen | keep | max | futility | more | more-incumbent | simplification.
    `pairing`: (run groups before the candidate's first run, difference groups before it,
    difference groups now, the candidate's differences seed for seed from the incumbent's values
    as judged and as measured), or None (unpaired)."""
    sd, df = _pool(groups)
    n, m = len(cand), len(inc)
    k, crit, df_used, screen = n, critical_t(s, m, df), df, s.screen
    looks, paired_used = s.max_runs, False
    gain = statistics.fmean(inc) - statistics.fmean(cand) - s.line_price * max(lines, 0)
    se = sd * math.sqrt(1 / n + 1 / m)
    if pairing is not None and s.paired:
        runs_then, diffs_then, diffs_now, diffs_others, runs_others, mine, mine_raw = pairing
        dsd_then, ddf_then = _pool(diffs_then)
        dsd, ddf = _pool(diffs_now)
        sd_then, df_then = _pool(runs_then)
        bar = sd_then * math.sqrt(1 + 1 / m) * critical_t(s, m, df_then) if df_then else 0.0
        measured = df_then > 0 and sd_then > 0
        bound = ddf_then < max(s.paired_min_df, 1) and not (ddf_then >= 1 and dsd_then == 0)
        if bound:  # no pairs measured before it: paired, no screen; the pairs measured since
            wins = measured  # (its own among them) are the sd, sqrt(2) run sds until there are any
            if ddf < 1:
                dsd, ddf = math.sqrt(2) * sd, df
            osd, odf = _pool(diffs_others)
            if odf < 1:
                osd, odf = _pool(runs_others)
                osd *= math.sqrt(2)
        else:
            wins = dsd_then == 0 or (measured and dsd_then * critical_t(s, 0, ddf_then) < bar)
            osd, odf = _pool(diffs_others)
        if len(mine_raw) >= 2 and odf > 0:  # its spread on the runs as measured, against the others'
            ss = sum((d - statistics.fmean(mine_raw)) ** 2 for d in mine_raw)
            p = (0.0 if ss > 0 else 1.0) if osd == 0 else float(chi2.sf(ss / osd**2, len(mine_raw) - 1))
            wins = wins and p >= s.pair_p
        if wins:
            screen = s.own_first_cut if bound else s.screen
            looks = max(s.max_runs, s.own_evidence_runs) if bound else s.max_runs
            crit = critical_t(replace(s, screen=screen, max_runs=looks), 0, ddf)
            if bound:  # its own pairs are the evidence: the boundary for t at few df
                crit = float(
                    student_t.ppf(norm.cdf(own_pairs_boundary(s.alpha * s.own_alpha_share, looks, s.futility)), ddf)
                )
            k, df_used = len(mine), ddf
            paired_used = True
            if len(mine) < len(cand):  # a seed of its the incumbent has no run under: that partner first
                return "more-incumbent"
            gain = -statistics.fmean(mine) - s.line_price * max(lines, 0)  # mine: candidate minus incumbent
            se = (dsd or 1e-12) / math.sqrt(k)
    t = gain / se
    simpler = s.simplify and lines < 0
    # Paired, the incumbent's mean is not read: it runs only on the seeds the pairs need.
    more = "more-incumbent" if m < s.incumbent_runs and not paired_used else "more"
    if k == 1:
        return "screen" if t < (min(-1.0, screen) if simpler else screen) else more
    if t > crit:
        return "keep"
    # Non-inferiority: not worse by simplify_margin run sds, one-sided at the judge's alpha.
    non_inferior = (gain + s.simplify_margin * sd) / se > student_t.ppf(1 - s.alpha, df_used)
    if simpler and k >= looks and non_inferior:
        return "simplification"
    if t < s.futility and not simpler:
        return "futility"
    if k >= looks:
        return "max"
    return more


def _pool(groups: list[list[float]]) -> tuple[float, int]:
    replicated = [g for g in groups if len(g) >= 2]
    df = sum(len(g) - 1 for g in replicated)
    if not df:
        return 0.0, 0
    return math.sqrt(sum(statistics.variance(g) * (len(g) - 1) for g in replicated) / df), df


def label(verdict, n: int, s: NoiseSettings) -> str:
    """The judge's verdict as a reference label."""
    if verdict.action == VerdictAction.MORE:
        return "more-incumbent" if verdict.more_incumbent_runs else "more"
    if verdict.action == VerdictAction.KEEP:
        return "simplification" if verdict.reason.startswith("simplification") else "keep"
    if verdict.reason.startswith("screened out"):
        return "screen"
    return "max" if verdict.reason.startswith(UNDECIDED) else "futility"


# --- judged until decided -----------------------------------------------------------------


def decide(judge, candidate: Experiment, incumbent: Experiment, history, metric, draw, max_looks: int = 100):
    """Ask `judge` about `candidate` until it keeps or discards, adding the runs it asks for
    (`draw(experiment)` is a new run's value). Returns every verdict; each must be well-formed:
    a "more" asks for at least one run, every verdict says why."""
    verdicts = []
    for _ in range(max_looks):
        v = judge.judge(candidate, incumbent, metric, history)
        assert v.action in tuple(VerdictAction) and v.reason, v
        verdicts.append(v)
        if v.action != VerdictAction.MORE:
            return verdicts
        assert v.more_candidate_runs + v.more_incumbent_runs >= 1, v
        assert min(v.more_candidate_runs, v.more_incumbent_runs) >= 0, v
        for _ in range(v.more_incumbent_runs):
            add_run(incumbent, draw(incumbent))
        for _ in range(v.more_candidate_runs):
            add_run(candidate, draw(candidate))
    raise AssertionError(f"{judge.name} undecided after {max_looks} looks: {verdicts[-1]}")


class SyntheticNight:
    """The controller's bookkeeping in miniature, for the noise judge: a baseline on `baseline_runs` seeds, then
    candidates judged until decided, extra runs drawn from each one's true mean. Seeds are
    given as the scheduler gives them (the lowest one an experiment has not run, or the one a
    verdict asks for); `sd_seed` > 0 adds a part of the noise that belongs to the seed and is
    shared by every experiment run under it (data order, initialisation), `sd` is the rest."""

    def __init__(self, judge: NoiseJudge, rng: random.Random, sd: float, base: float = 1.0, sd_seed: float = 0.0):
        self.judge, self.rng, self.sd, self.sd_seed = judge, rng, sd, sd_seed
        self.true = {1: base}
        self.seed_effect: dict[int, float] = {}
        self.pinned: dict[int, int] = {}  # experiment -> the one seed it runs under, whatever it is given
        baseline = experiment(1, None, status=ExpStatus.KEPT, decided=0.5)
        for _ in range(judge.baseline_runs()):
            self.run(baseline)
        self.history = [baseline]
        self.incumbent = baseline

    def draw(self, exp_id: int, seed: int = 0) -> float:
        seed = self.pinned.get(exp_id, seed)
        if self.sd_seed and seed not in self.seed_effect:
            self.seed_effect[seed] = self.rng.gauss(0.0, self.sd_seed)
        return self.true[exp_id] + self.seed_effect.get(seed, 0.0) + self.rng.gauss(0.0, self.sd)

    def run(self, exp: Experiment, seed: int | None = None, started: float | None = None) -> None:
        """One more run of `exp`: under `seed`, or the lowest seed it has not run."""
        if seed is None:
            seed = next(i for i in range(10_000) if i not in {r.seed for r in exp.runs})
        add_run(exp, self.draw(exp.id, seed), seed=seed, started=started)

    def lucky_seed(self, among: int = 50) -> int:
        """The luckiest of `among` seeds no run has used (a lower metric is better)."""
        seeds = range(10_000, 10_000 + among)
        for seed in seeds:
            self.seed_effect.setdefault(seed, self.rng.gauss(0.0, self.sd_seed))
        return min(seeds, key=lambda s: self.seed_effect[s])

    def candidate(self, gain_sd: float, diff: str = "", pinned: int | None = None) -> list[tuple[str, str]]:
        """One candidate `gain_sd` noise sds better than the incumbent's true mean, judged to
        the end (`pinned`: it runs under that seed whatever seed it is given). Returns (judge's
        label, reference label) at every look."""
        exp_id = len(self.history) + 1
        if pinned is not None:
            self.pinned[exp_id] = pinned
        self.true[exp_id] = self.true[self.incumbent.id] - gain_sd * self.sd
        cand = experiment(exp_id, self.incumbent.id, diff=diff)
        self.history.append(cand)
        self.run(cand)
        s = self.judge.s
        looks = []
        while True:
            v = self.judge.judge(cand, self.incumbent, METRIC, self.history)
            groups = [_per_seed(e) for e in self.history]
            # The incumbent's values as the judge reads them (a kept change's selected runs moved to
            # their selection-corrected mean, tested on its own in test_selection.py).
            inc_runs = self.judge.incumbent_runs(self.incumbent, self.history, METRIC)
            inc = [value for _, value in inc_runs]
            ref = reference(cand.ok_values, inc, groups, s, net_added_lines(diff), self._pairing(cand, inc_runs))
            looks.append((label(v, len(cand.runs), s), ref))
            if v.action != VerdictAction.MORE:
                break
            extra = [*v.incumbent_seeds, *[None] * (v.more_incumbent_runs - len(v.incumbent_seeds))]
            for seed in extra:  # made now, after the incumbent was kept
                self.run(self.incumbent, seed, started=exp_id + len(cand.runs) / 100 + 0.001)
            for _ in range(v.more_candidate_runs):
                self.run(cand)
        cand.params["runs_at_decision"] = len(cand.runs)
        cand.status = ExpStatus.KEPT if v.action == VerdictAction.KEEP else ExpStatus.DISCARDED
        cand.decided = float(exp_id) + 0.9
        cand.reason = v.reason
        if v.action == VerdictAction.KEEP:
            self.incumbent = cand
        return looks

    def _pairing(self, cand: Experiment, inc_runs) -> tuple:
        """What the reference needs to read the paired rule: groups before the candidate's first
        run and now, and the candidate's differences seed for seed (latest run of each seed)."""
        first = min(r.started for r in cand.runs)
        then = [replace(e, runs=[r for r in e.runs if r.started < first]) for e in self.history if e.created < first]
        ordered = sorted(inc_runs, key=lambda rv: rv[0].started)
        judged = {r.seed: value for r, value in ordered}
        measured = {r.seed: r.value for r, _ in ordered}
        mine = {r.seed: r.value for r in sorted(cand.runs, key=lambda r: r.started)}
        others = [e for e in self.history if e is not cand]
        return (
            [_per_seed(e) for e in then],
            _difference_groups(then),
            _difference_groups(self.history),
            _difference_groups(others),
            [_per_seed(e) for e in others],
            [mine[k] - judged[k] for k in sorted(mine) if k in judged],
            [mine[k] - measured[k] for k in sorted(mine) if k in measured],
        )


def _per_seed(e: Experiment) -> list[float]:
    latest = {r.seed: r.value for r in sorted(e.runs, key=lambda r: r.started)}
    return list(latest.values())


def _difference_groups(history: list[Experiment]) -> list[list[float]]:
    by_id = {e.id: e for e in history}
    out = []
    for e in history:
        parent = by_id.get(e.parent_id)
        if parent is None:
            continue
        theirs = {r.seed: r.value for r in sorted(parent.runs, key=lambda r: r.started)}
        mine = {r.seed: r.value for r in sorted(e.runs, key=lambda r: r.started)}
        out.append([mine[k] - theirs[k] for k in sorted(mine) if k in theirs])
    return out
