"""Paired comparisons: the judge compares a candidate's runs with the incumbent's seed for
seed once the night has measured the paired noise and pairing pays (judges/paired.py)."""

from __future__ import annotations

import random

from overnight.judges.noise import NoiseJudge, NoiseSettings, noise_of
from overnight.judges.paired import choose
from overnight.judges.pooled import paired_noise_of
from overnight.judges.stats import Noise
from overnight.records import ExpStatus
from overnight.testing.judges import METRIC, SyntheticNight, experiment


def _night_with_paired_noise(shared: float = 0.05, repeat: float = 0.001):
    """A baseline on 8 seeds and two decided candidates on seeds 0-3 whose differences from it
    are small: the paired noise is known (6 df) and far below the run noise."""
    rng = random.Random(3)
    seed_part = [rng.gauss(0, shared) for _ in range(8)]
    base = experiment(1, None, [1 + seed_part[s] + rng.gauss(0, repeat) for s in range(8)], status=ExpStatus.KEPT)
    base.decided = 0.5
    history = [base]
    for i in (2, 3):
        e = experiment(i, 1, [1 + seed_part[s] + rng.gauss(0, repeat) for s in range(4)], status=ExpStatus.DISCARDED)
        e.decided = i + 0.9
        history.append(e)
    return history, seed_part, rng


def test_the_paired_noise_is_pooled_from_differences_seed_for_seed():
    history, _, _ = _night_with_paired_noise()
    paired, unpaired = paired_noise_of(history), noise_of(history)
    assert paired.df == 6  # two candidates, four shared seeds each
    assert paired.sd < unpaired.sd / 10
    crits = (2.3, 2.3)
    assert choose(unpaired, paired, 8, crits).paired
    bound = choose(unpaired, paired, 8, crits, min_df=7)  # not measured enough yet: sd bounded
    assert bound.paired and bound.bound
    assert not choose(unpaired, paired, 8, crits, enabled=False).paired
    # All noise repeat noise: a difference has twice a run's variance, pairing does not pay...
    assert not choose(Noise(1.0, 20), Noise(1.41, 20), 8, crits).paired
    # ...nor does a paired sd a little below the run sd measured on one pair (its t is wide).
    assert not choose(Noise(1.0, 20), Noise(0.5, 1), 8, (2.3, 12.0)).paired


def test_a_small_gain_hidden_in_seed_noise_is_kept_paired():
    history, seed_part, rng = _night_with_paired_noise()
    gain = 0.01  # a fifth of the seed noise, ten times the repeat noise
    cand = experiment(4, 1, [1 - gain + seed_part[s] + rng.gauss(0, 0.001) for s in range(2)])
    v = NoiseJudge().judge(cand, history[0], METRIC, [*history, cand])
    assert v.action == "keep" and v.reason.startswith("confirmed (paired): "), v.reason
    off = NoiseJudge(NoiseSettings(paired=False)).judge(cand, history[0], METRIC, [*history, cand])
    assert off.action != "keep" and "unpaired (pairing off)" in off.reason


def test_a_candidate_seed_without_a_partner_asks_the_incumbent_to_run_it():
    history, seed_part, rng = _night_with_paired_noise()
    cand = experiment(4, 1, [1 + seed_part[0], 0.99], seeds=[0, 9])  # seed 9: the incumbent never ran it
    v = NoiseJudge().judge(cand, history[0], METRIC, [*history, cand])
    assert v.action == "more" and v.incumbent_seeds == (9,) and v.more_incumbent_runs == 1
    assert v.more_candidate_runs == 0


def test_differences_that_spread_beyond_the_paired_noise_are_judged_unpaired():
    history, seed_part, rng = _night_with_paired_noise()
    # The change re-draws what the seed controls (a new shape): its runs no longer follow the seeds.
    cand = experiment(4, 1, [1 - 0.01 + rng.gauss(0, 0.05) for _ in range(3)])
    v = NoiseJudge().judge(cand, history[0], METRIC, [*history, cand])
    assert "unpaired (its differences spread beyond the paired noise" in v.reason


def _keep_rate(gain_sd: float, sd_seed: float, sd: float, paired: bool, nights: int, seed: int) -> tuple[float, float]:
    """Keep rate of candidates `gain_sd` run-sds better (run sd: sqrt(sd_seed^2 + sd^2)) and
    runs per candidate, over synthetic nights of 12 candidates (the first 6 no-ops that give
    the paired noise its degrees of freedom, not counted)."""
    rng = random.Random(seed)
    kept = runs = total = 0
    run_sd = (sd_seed**2 + sd**2) ** 0.5
    for _ in range(nights):
        night = SyntheticNight(NoiseJudge(NoiseSettings(remeasure_every=0, paired=paired)), rng, sd=sd, sd_seed=sd_seed)
        for i in range(12):
            g = gain_sd if i >= 6 else 0.0
            night.candidate(g * run_sd / sd)  # SyntheticNight counts gains in units of `sd`
            if i >= 6:
                last = night.history[-1]
                kept += last.status == ExpStatus.KEPT
                runs += len(last.runs)
                total += 1
    return kept / total, runs / total


def test_when_the_noise_is_all_seed_pairing_wins():
    on, _ = _keep_rate(0.5, sd_seed=1.0, sd=0.05, paired=True, nights=15, seed=1)
    off, _ = _keep_rate(0.5, sd_seed=1.0, sd=0.05, paired=False, nights=15, seed=1)
    assert on > 0.8 and off < 0.3, (on, off)


def test_when_the_noise_is_all_repeat_pairing_loses_no_alpha():
    false_keeps, _ = _keep_rate(0.0, sd_seed=0.0, sd=1.0, paired=True, nights=40, seed=2)
    assert false_keeps <= 0.08, false_keeps  # alpha 0.05; 240 no-ops: 0.08 is 1.8 sampling sds above


def test_the_loop_runs_a_partner_under_the_seed_the_judge_names(tmp_path):
    """Through the real loop (toy task, git, subprocesses, SQLite): a verdict that names an
    incumbent seed (a missing partner) gets exactly that run, not the lowest unused seed."""
    from overnight.judges.base import Judge, Verdict
    from overnight.night.config import RunConfig
    from overnight.night.controller import Controller
    from overnight.records import VerdictAction
    from overnight.testing.nights import Scripted, set_knobs
    from overnight.testing.toy import quiet_toy

    class NamesAPartner(Judge):
        name = "partner"

        def baseline_runs(self) -> int:
            return 2

        def judge(self, candidate, incumbent, metric, history):
            if not any(r.seed == 7 for r in incumbent.runs):
                return Verdict(VerdictAction.MORE, "partner first", more_incumbent_runs=1, incumbent_seeds=(7,))
            return Verdict(VerdictAction.DISCARD, "seen", candidate.runs[0].value)

    root = quiet_toy(tmp_path / "toy")
    c = Controller(root, RunConfig(tag="t", judge="greedy", experiments=2), proposer=Scripted(set_knobs(DEPTH=3)))
    c.judge = c.night.judge = NamesAPartner()
    c.run()
    base, cand = c.journal.experiments("t")
    assert sorted(r.seed for r in base.runs) == sorted([c.night.seed(0), c.night.seed(1), 7])  # the night's two, and 7
    assert cand.status == ExpStatus.DISCARDED and cand.reason == "seen"
    c.journal.close()
