"""The smallest confirmable gain (judges/power.py): what the noise judge keeps with 80 %
probability, and how it falls as the night measures more."""

from __future__ import annotations

import random

from overnight.judges.noise import NoiseJudge, NoiseSettings, noise_of
from overnight.judges.power import detectable_gain, keep_probability
from overnight.records import ExpStatus
from overnight.testing.judges import SyntheticNight


def test_the_detectable_gain_falls_as_the_night_measures_more():
    """Seeds carry most of the noise: at first the judge pairs with a bound (sqrt 2 run sds);
    once confirmations have measured the paired noise, the figure drops by far."""
    rng = random.Random(5)
    night = SyntheticNight(NoiseJudge(NoiseSettings(remeasure_every=0)), rng, sd=0.1, sd_seed=1.0)
    first, design = detectable_gain(night.judge, night.history)
    assert first is not None and design.paired and design.bound
    figures = [first]
    for _ in range(4):
        for _ in range(5):
            night.candidate(rng.choice([0.0, 0.0, -5.0, 1.0]))
        figures.append(detectable_gain(night.judge, night.history)[0])
    assert max(figures[1:]) < figures[0] / 4, figures


def test_more_runs_of_the_same_noise_lower_the_figure():
    """Unpaired, the same run sd measured on 4, 8 and 16 baseline runs: more degrees of freedom
    (a lower threshold on the t scale) and a better-known incumbent mean."""
    from overnight.testing.judges import experiment

    judge = NoiseJudge(NoiseSettings(paired=False))
    figures = []
    for n in (4, 8, 16):
        base = experiment(1, None, [1.0 + (0.01 if i % 2 else -0.01) for i in range(n)], status=ExpStatus.KEPT)
        base.decided = 0.5
        sd = noise_of([base]).sd
        figures.append(detectable_gain(judge, [base])[0] / sd)
    assert figures[0] > figures[1] > figures[2], figures


def test_a_night_without_noise_yet_says_so():
    judge = NoiseJudge()
    assert detectable_gain(judge, []) == (None, None)


def test_at_the_detectable_gain_the_judge_keeps_four_in_five():
    """Unpaired (no seed noise, pairing off): candidates exactly that much better, each on a
    fresh night right after its baseline, are kept about 80 % of the time by the real judge."""
    # 8 baseline seeds: the power is read off the noise before the candidate's first run, and with
    # the default 2 the unpaired design's top-ups to 5 change the design it is judged under.
    settings = NoiseSettings(remeasure_every=0, paired=False, correct_selection=False, baseline_runs=8)
    rng = random.Random(8)
    kept = trials = 0
    for _ in range(400):
        night = SyntheticNight(NoiseJudge(settings), rng, sd=1.0)
        g, design = detectable_gain(night.judge, night.history)
        assert not design.paired
        night.candidate(g / noise_of(night.history).sd)  # in units of the true sd (1.0)
        kept += night.history[-1].status == ExpStatus.KEPT
        trials += 1
    # The figure uses the estimated sd of each night and the judge's threshold at its df:
    # agreement within sampling error (400 trials: sd 0.02) and the approximation's slack.
    assert 0.7 <= kept / trials <= 0.9, kept / trials


def test_keep_probability_rises_with_the_gain():
    probs = [keep_probability(g, 8, 2.3, 0.15, 0.5, 4) for g in (0.0, 1.0, 2.0, 3.0)]
    assert probs == sorted(probs) and probs[0] < 0.06 and probs[-1] > 0.8
