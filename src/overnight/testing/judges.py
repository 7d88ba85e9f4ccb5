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

from scipy.stats import norm
from scipy.stats import t as student_t

from overnight.judges.noise import NoiseJudge, NoiseSettings
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


def reference(cand: list[float], inc: list[float], groups: list[list[float]], s: NoiseSettings, lines: int = 0) -> str:
    """The decision the docstring describes, as a label:
    screen | keep | max | futility | more | more-incumbent | simplification."""
    replicated = [g for g in groups if len(g) >= 2]
    df = sum(len(g) - 1 for g in replicated)
    sd = math.sqrt(sum(statistics.variance(g) * (len(g) - 1) for g in replicated) / df)
    n, m = len(cand), len(inc)
    gain = statistics.fmean(inc) - statistics.fmean(cand) - s.line_price * max(lines, 0)
    t = gain / (sd * math.sqrt(1 / n + 1 / m))
    crit = critical_t(s, m, df)
    simpler = s.simplify and lines < 0
    more = "more-incumbent" if m < s.incumbent_runs else "more"
    if n == 1:
        return "screen" if t < (-1.0 if simpler else s.screen) else more
    if t > crit:
        return "keep"
    # Non-inferiority: not worse by simplify_margin sds, one-sided at the judge's alpha.
    non_inferior = (gain + s.simplify_margin * sd) / (sd * math.sqrt(1 / n + 1 / m)) > student_t.ppf(1 - s.alpha, df)
    if simpler and n >= s.max_runs and non_inferior:
        return "simplification"
    if n >= s.max_runs:
        return "max"
    if t < s.futility and not simpler:
        return "futility"
    return more


def label(verdict, n: int, s: NoiseSettings) -> str:
    """The judge's verdict as a reference label."""
    if verdict.action == VerdictAction.MORE:
        return "more-incumbent" if verdict.more_incumbent_runs else "more"
    if verdict.action == VerdictAction.KEEP:
        return "simplification" if verdict.reason.startswith("simplification") else "keep"
    if verdict.reason.startswith("screened out"):
        return "screen"
    return "max" if n >= s.max_runs else "futility"


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
    candidates judged until decided, extra runs drawn from each one's true mean."""

    def __init__(self, judge: NoiseJudge, rng: random.Random, sd: float, base: float = 1.0):
        self.judge, self.rng, self.sd = judge, rng, sd
        self.true = {1: base}
        baseline = experiment(1, None, status=ExpStatus.KEPT, decided=0.5)
        for _ in range(judge.baseline_runs()):
            add_run(baseline, self.draw(1))
        self.history = [baseline]
        self.incumbent = baseline

    def draw(self, exp_id: int) -> float:
        return self.true[exp_id] + self.rng.gauss(0.0, self.sd)

    def candidate(self, gain_sd: float, diff: str = "") -> list[tuple[str, str]]:
        """One candidate `gain_sd` noise sds better than the incumbent's true mean, judged to
        the end. Returns (judge's label, reference label) at every look."""
        exp_id = len(self.history) + 1
        self.true[exp_id] = self.true[self.incumbent.id] - gain_sd * self.sd
        cand = experiment(exp_id, self.incumbent.id, diff=diff)
        self.history.append(cand)
        add_run(cand, self.draw(exp_id))
        s = self.judge.s
        looks = []
        while True:
            v = self.judge.judge(cand, self.incumbent, METRIC, self.history)
            groups = [e.ok_values for e in self.history]
            # The incumbent's values as the judge reads them (a kept change's selected runs moved to
            # their selection-corrected mean, tested on its own in test_selection.py).
            inc = self.judge.incumbent_values(self.incumbent, self.history, METRIC)
            ref = reference(cand.ok_values, inc, groups, s, net_added_lines(diff))
            looks.append((label(v, len(cand.runs), s), ref))
            if v.action != VerdictAction.MORE:
                break
            for _ in range(v.more_incumbent_runs):  # made now, after the incumbent was kept
                add_run(self.incumbent, self.draw(self.incumbent.id), started=exp_id + len(cand.runs) / 100 + 0.001)
            for _ in range(v.more_candidate_runs):
                add_run(cand, self.draw(exp_id))
        cand.params["runs_at_decision"] = len(cand.runs)
        cand.status = ExpStatus.KEPT if v.action == VerdictAction.KEEP else ExpStatus.DISCARDED
        cand.decided = float(exp_id) + 0.9
        cand.reason = v.reason
        if v.action == VerdictAction.KEEP:
            self.incumbent = cand
        return looks
