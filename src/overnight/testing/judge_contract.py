"""What every judge promises the controller (judges/base.py), as one suite each judge's test
class inherits (optuna's `testing/pytest_samplers.py` idea):

    class TestGreedy(JudgeContract):
        name = "greedy"

        @pytest.fixture
        def judge(self):
            return GreedyJudge()

A baseline on `baseline_runs()` seeds, then one candidate judged until it is kept or
discarded, each extra run the judge asks for drawn as the controller would run it
(judges.decide, which also checks that every verdict is well-formed). In memory, milliseconds.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Iterator

import pytest

from overnight.judges import make_judge
from overnight.records import ExpStatus, VerdictAction
from overnight.task import Metric
from overnight.testing.judges import add_run, decide, experiment

MINIMIZE, MAXIMIZE = Metric("loss", "minimize"), Metric("acc", "maximize")
SD = 0.01  # the runs' noise


def judged(judge, metric: Metric, incumbent_runs: Iterator[float], candidate_runs: Iterator[float]):
    """(verdicts, candidate): the baseline measured on its seeds, kept with the mean of its runs
    as the controller journals it, then the candidate judged until decided."""
    base = experiment(1, None, status=ExpStatus.KEPT, decided=0.5)
    for _ in range(judge.baseline_runs()):
        add_run(base, next(incumbent_runs))
    base.value = statistics.fmean(base.ok_values)
    cand = experiment(2, 1)
    add_run(cand, next(candidate_runs))
    runs = {1: incumbent_runs, 2: candidate_runs}
    verdicts = decide(judge, cand, base, [base, cand], metric, lambda e: next(runs[e.id]))
    return verdicts, cand


def noisy(mean: float, seed: int) -> Iterator[float]:
    rng = random.Random(seed)
    while True:
        yield mean + rng.gauss(0.0, SD)


def see_saw(mean: float, first: float) -> Iterator[float]:
    """mean + first, mean - first, ...: noisy-looking runs whose mean after any number of them
    is `mean` or on the side of `first`."""
    return itertools.cycle([mean + first, mean - first])


class JudgeContract:
    name: str  # its CLI name

    @pytest.fixture
    def judge(self):
        """Overridden by each implementation: a judge with its default settings."""
        raise NotImplementedError

    def test_is_made_by_its_name(self, judge):
        assert judge.name == self.name and type(make_judge(self.name)) is type(judge)

    def test_the_baseline_gets_at_least_one_run(self, judge):
        n = judge.baseline_runs()
        assert isinstance(n, int) and n >= 1

    @pytest.mark.parametrize("metric", [MINIMIZE, MAXIMIZE], ids=["minimize", "maximize"])
    @pytest.mark.parametrize("seed", range(5))
    def test_keeps_a_clearly_better_candidate(self, judge, metric, seed):
        better = 1.0 - metric.sign * 10 * SD  # ten noise sds better, in the metric's direction
        verdicts, cand = judged(judge, metric, noisy(1.0, seed), noisy(better, seed + 100))
        assert verdicts[-1].action == VerdictAction.KEEP, verdicts[-1]
        assert verdicts[-1].value == pytest.approx(statistics.fmean(cand.ok_values))

    @pytest.mark.parametrize("metric", [MINIMIZE, MAXIMIZE], ids=["minimize", "maximize"])
    @pytest.mark.parametrize("seed", range(5))
    def test_discards_a_clearly_worse_candidate(self, judge, metric, seed):
        worse = 1.0 + metric.sign * 10 * SD
        verdicts, _ = judged(judge, metric, noisy(1.0, seed), noisy(worse, seed + 100))
        assert verdicts[-1].action == VerdictAction.DISCARD, verdicts[-1]

    @pytest.mark.parametrize("metric", [MINIMIZE, MAXIMIZE], ids=["minimize", "maximize"])
    @pytest.mark.parametrize("worse_by", [0.0, 0.1 * SD, SD])
    def test_never_keeps_a_candidate_no_better(self, judge, metric, worse_by):
        """Runs that vary like real ones, but the candidate's mean is never better than the
        incumbent's (its first run on the worse side, the incumbent's on the better)."""
        worse = 1.0 + metric.sign * worse_by
        incumbent = see_saw(1.0, -metric.sign * SD)
        verdicts, _ = judged(judge, metric, incumbent, see_saw(worse, metric.sign * SD))
        assert verdicts[-1].action == VerdictAction.DISCARD, verdicts

    @pytest.mark.parametrize("gain_sds", [-3, -1, 0, 1, 3])
    @pytest.mark.parametrize("seed", range(4))
    def test_every_candidate_is_decided_with_well_formed_verdicts(self, judge, gain_sds, seed):
        verdicts, _ = judged(judge, MINIMIZE, noisy(1.0, seed), noisy(1.0 - gain_sds * SD, seed + 100))
        assert verdicts[-1].action in (VerdictAction.KEEP, VerdictAction.DISCARD)
        assert all(v.value is not None and math.isfinite(v.value) for v in verdicts)

    def test_drift_hooks_answer_plainly(self, judge):
        """remeasure_due is a yes or no; drift a message or None (nothing to report here)."""
        base = experiment(1, None, values=[1.0, 1.01, 0.99], status=ExpStatus.KEPT, decided=0.5)
        assert judge.remeasure_due(base, [base]) in (True, False)
        assert judge.drift(base, [base]) is None
