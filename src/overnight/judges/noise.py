"""The noise-aware judge (the default): keep only changes whose gain clears the noise.

The procedure, for a candidate C against the incumbent I (gain d > 0 means C is better):

0. Seed: a candidate that ignores OVERNIGHT_SEED (its change pins it, or its runs agree far
   more closely than the night's noise allows) is discarded, whatever its gain (seeds.py).
1. Noise: sigma is pooled over every experiment's replicate runs (the baseline runs under
   `baseline_runs` seeds at the start; every confirmation adds to it); the paired-difference
   sd over every experiment's runs paired seed for seed with its parent's (paired.py).
   Design: paired (d and se from the candidate's differences with the incumbent's run under
   the same seed, se = sigma_d / sqrt(pairs); the boundary below for that design) where it
   pays, else unpaired; the reason says which.
2. Screen (1 run): d / se < `screen` -> discard at once. Most candidates are worse, so most
   cost one run. Unpaired se = sigma * sqrt(1/n_C + 1/n_I).
   While the night has measured too few pairs (`paired_min_df`), a candidate is judged on
   its own pairs instead (judges/paired.py): no screen, up to `own_evidence_runs` runs, its
   boundary computed for t on that few df at `own_alpha_share` of alpha.
3. Confirm (sequential, runs 2..`max_runs`): keep as soon as t = d / se exceeds a constant
   group-sequential boundary, computed (stats.sequential_boundary) so that a change that does
   nothing is kept with probability alpha over the whole procedure: screen, every look and
   the futility stop included; then moved to the t scale for the estimated sd. Discard as
   soon as t < `futility` (0.5) from the second run on, or at `max_runs` without clearing
   ("not confirmed in N runs": for want of evidence, so the same files proposed again are
   measured again, night/duplicates.py).
4. The incumbent is compared by the mean of its own replicates (at least `incumbent_runs`;
   the judge asks for more when a freshly kept candidate has fewer), never one lucky number.
5. The winner's curse: a kept candidate's confirmation runs were selected for looking good, so
   as the next incumbent they are read at their selection-corrected mean (judges/selection.py;
   runs made after the keep are fresh and read as measured).

Simplicity: lines are counted as code-carrying logical lines (stats.net_added_lines: blank
lines, comments, docstrings and reformatting count 0). d is charged `line_price` metric units
per net added line; a candidate that removes code lines is kept as a simplification when,
after all its runs, a one-sided non-inferiority test says it is not worse by
`simplify_margin` noise sds: (d + margin * sigma) / se > the t quantile at 1 - alpha. So a
removal that is truly worse by the margin is kept at most alpha of the time (the judge's own
false-keep rate), and one that changes nothing needs to look a little better than the
incumbent to pass with `max_runs` runs. An incumbent that ignores the seed (kept where
nothing varied with it) counts as ONE observation, so repetition cannot fake confidence.

What this does not protect against: a change that helps only on the seeds tried, or drift
that hits candidate and incumbent differently between their runs (see `remeasure_every`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from overnight.judges.base import Judge, Verdict
from overnight.judges.drift import drift_message, remeasure_due
from overnight.judges.gain import measure_gain
from overnight.judges.paired import Design, choose, own_pairs_boundary, spread_p
from overnight.judges.pooled import before, differences, noise_of, ok_runs, paired_noise_of
from overnight.judges.seeds import SEED_VAR, ignores_seed_why
from overnight.judges.selection import selection_shift
from overnight.judges.stats import (
    PAIRED,
    Noise,
    ignores_seed,
    mean,
    net_added_lines,
    sequential_boundary,
    t_quantile,
    z_to_t,
)
from overnight.records import EventKind, Experiment, Run, RunStatus, VerdictAction
from overnight.task import Metric

UNDECIDED = "not confirmed in"  # a discard at the last run, t between futility and the keep threshold


@dataclass(frozen=True)
class NoiseSettings:
    alpha: float = 0.05  # false-keep rate for a change that does nothing
    # Seeds for the baseline before the first candidate: the fewest that give a run sd. Pairs
    # top it up on the seeds they need; the unpaired design on `incumbent_runs`.
    baseline_runs: int = 2
    incumbent_runs: int = 5  # the incumbent's mean is over at least this many runs
    correct_selection: bool = True  # read a kept change's runs at their selection-corrected mean
    selection_floor: float = 1.25  # ... corrected by at most this many se (see judges/selection.py)
    fresh_incumbent: bool = False  # ... or use only runs made after it was kept
    max_runs: int = 4  # a candidate's runs at most
    # ... while the night has no paired noise of its own (the design's sd only bounded): its own
    # pairs estimate the paired sd, and it gets the runs that evidence needs, up to this many.
    own_evidence_runs: int = 8
    # ... held to this share of alpha: a night's first candidates would otherwise add to the
    # false keeps the night promises (its A/A rate, below the nominal alpha: 1.7 %).
    own_alpha_share: float = 0.5
    # ... and its first run discarded only when worse than this many bound sds (sqrt(2) run sds,
    # the most a pair can vary): a change that clearly broke the model pays one run, not two.
    own_first_cut: float = -2.0
    # The first run's cut: it must beat the incumbent's mean by this many se, else "screened
    # out:" at once. Not --screen's short runs (night/screen.py); the field keeps its journaled name.
    screen: float = 0.15
    futility: float = 0.5  # from the second run on, t below this discards at once
    line_price: float = 0.0  # metric units a net added line must buy (0: off)
    simplify: bool = True  # keep code removals that are not worse by more than simplify_margin
    simplify_margin: float = 0.5  # noise sds: a removal this much worse is kept <= alpha of the time
    remeasure_every: int = 10  # candidates between re-measurements of the incumbent (0: never)
    drift_z: float = 3.0  # a re-measure this many se off the incumbent's mean is drift
    paired: bool = True  # compare seed for seed where it pays (judges/paired.py)
    # ... measured on this many degrees of freedom first (until then each candidate is judged on
    # its own pairs: at fewer df the known-sd boundary moved to t keeps too many no-ops)
    paired_min_df: int = 8
    pair_p: float = 0.01  # differences spread beyond the paired noise at this chance: unpaired
    seed_p: float = 1e-3  # runs this unlikely steady across seeds ignore the seed (judges/seeds.py)


class NoiseJudge(Judge):
    name = "noise"

    def __init__(self, settings: NoiseSettings | None = None):
        self.s = settings or NoiseSettings()
        self._shifts: dict[tuple, float] = {}  # (kept id, decided) -> selection shift

    def baseline_runs(self) -> int:
        return self.s.baseline_runs

    def incumbent_values(
        self, incumbent: Experiment, history: list[Experiment] | None = None, metric: Metric | None = None
    ) -> list[float]:
        """The incumbent's runs to compare against. A kept candidate's own confirmation runs
        were selected for looking good (the winner's curse): with `correct_selection` they are
        read at the mean the selection says they stand for (judges/selection.py); with
        `fresh_incumbent` they are left out altogether."""
        return [v for _, v in self.incumbent_runs(incumbent, history, metric)]

    def incumbent_runs(
        self, incumbent: Experiment, history: list[Experiment] | None = None, metric: Metric | None = None
    ) -> list[tuple[Run, float]]:
        """(run, value as the judge reads it) for the incumbent's runs (see incumbent_values)."""
        runs = [r for r in incumbent.runs if r.status == RunStatus.OK and r.value is not None]
        if self.s.fresh_incumbent and incumbent.parent_id is not None and incumbent.decided:
            runs = [r for r in runs if r.started > incumbent.decided]
        shift = 0.0
        if self.s.correct_selection and history is not None and metric is not None:
            shift = self._selection_shift(incumbent, history, metric)
        return [(r, r.value + shift if shift and r.started < (incumbent.decided or 0) else r.value) for r in runs]

    def _selection_shift(self, kept: Experiment, history: list[Experiment], metric: Metric) -> float:
        """How far (metric units, towards worse) `kept`'s confirmation runs are moved so that
        their mean is the conditional estimate of its true mean, given that the judge kept it."""
        key = (kept.id, kept.decided)
        if key not in self._shifts:
            self._shifts[key] = selection_shift(self, kept, history, metric)
        return self._shifts[key]

    def max_runs(self, design: Design | None) -> int:
        """A candidate's runs at most: more while the paired noise is only bounded, when its own
        pairs are the evidence (a Pocock boundary over those looks keeps alpha)."""
        if design is not None and design.bound:
            return max(self.s.max_runs, self.s.own_evidence_runs)
        return self.s.max_runs

    def first_run_cut(self, design: Design | None) -> float:
        """The first run's screen. While a candidate is judged on its own pairs one pair measures
        no sd: only a first pair far worse than the sqrt(2) run sds bound allows stops it
        (`own_first_cut`); any other gets a second run, which measures its sd."""
        return self.s.own_first_cut if design is not None and design.bound else self.s.screen

    def critical_t(
        self,
        df: int,
        n_incumbent: int,
        screen: float | None = None,
        max_runs: int | None = None,
        own: bool = False,
    ) -> float:
        """The keep threshold for t: the group-sequential z boundary for this design, moved to
        the t scale with the pooled degrees of freedom (the sd is estimated, not known)."""
        screen = self.s.screen if screen is None else screen
        looks = self.s.max_runs if max_runs is None else max_runs
        if own:  # judged on its own pairs: t at few df has heavy tails the z design does not carry
            return z_to_t(own_pairs_boundary(self.s.alpha * self.s.own_alpha_share, looks, self.s.futility), df)
        z = sequential_boundary(self.s.alpha, n_incumbent, looks, screen, self.s.futility)
        return z_to_t(z, df)

    def judge(self, candidate: Experiment, incumbent: Experiment, metric: Metric, history: list[Experiment]) -> Verdict:
        values, seeds = ok_runs(candidate)
        value = mean(values)
        inc_runs = self.incumbent_runs(incumbent, history, metric)
        if not inc_runs:
            return Verdict(
                VerdictAction.MORE,
                f"incumbent #{incumbent.id} has no usable run; measuring it again",
                value,
                more_incumbent_runs=1,
            )
        # A candidate that ignores the seed is never kept (judges/seeds.py): its own spread is
        # compared with the noise of the night's other experiments.
        others = noise_of([e for e in history if e.id != candidate.id])
        pinned = ignores_seed_why(candidate.diff, values, seeds, others, self.s.seed_p)
        if pinned:
            return Verdict(
                VerdictAction.DISCARD,
                f"ignores {SEED_VAR}: {pinned}; one seed's luck is not a gain",
                value,
                flags=(EventKind.IGNORES_SEED,),
            )
        inc_values = [v for _, v in inc_runs]
        noise = noise_of(history)
        n = len(values)
        lines = net_added_lines(candidate.diff, candidate.edits)
        if not noise.known:
            # No replicate noise at all (a deterministic task): fall back to strict improvement.
            gain = metric.improvement(value, mean(inc_values)) - self.s.line_price * max(lines, 0)
            if n >= 2 or gain != 0 or ignores_seed(values, seeds):
                return Verdict(
                    VerdictAction.KEEP if gain > 0 else VerdictAction.DISCARD,
                    f"no measurable noise; gain {gain:+.6g}",
                    value,
                )
            return Verdict(VerdictAction.MORE, "no noise estimate yet", value, more_candidate_runs=1)
        # An incumbent that ignores the seed (kept where nothing varied with it, or by an older
        # version) is one observation however often it ran: repetition must not fake precision.
        inc_seeds = [r.seed for r, _ in inc_runs]
        n_inc = 1 if ignores_seed(inc_values, inc_seeds) else len(inc_values)
        design, pairs = self._design(candidate, inc_runs, n_inc, history)
        if design.paired and len(pairs) < len(set(seeds)):
            # A candidate's seed the incumbent has no run on: its partner is made first.
            missing = sorted(set(seeds) - {s for s, _, _ in pairs})
            return Verdict(
                VerdictAction.MORE,
                f"pairing: #{incumbent.id} has no run under seed(s) {', '.join(map(str, missing))}; running it",
                value,
                more_incumbent_runs=len(missing),
                incumbent_seeds=tuple(missing),
            )
        g = measure_gain(self, design, pairs, values, inc_values, n_inc, noise, history, metric, incumbent.id)
        gain = g.raw_gain - self.s.line_price * max(lines, 0)
        t = gain / g.se
        simplification = self.s.simplify and lines < 0
        # Non-inferiority for simplifications: t shifted by the margin (in run sds), against
        # one-sided 1 - alpha.
        t_ni = (gain + self.s.simplify_margin * noise.sd) / g.se
        crit_ni = t_quantile(1 - self.s.alpha, g.df)
        why = (
            f"gain {gain:+.4g} (raw {g.raw_gain:+.4g}, {lines:+d} lines) {g.over}; "
            f"se {g.se:.3g}, t {t:.2f}, need {g.crit:.2f}; {g.noise_said}"
        )
        if simplification:
            why += f"; simplification t {t_ni:.2f} (margin {self.s.simplify_margin:g} sd), need {crit_ni:.2f}"
        cut, looks = self.first_run_cut(design), self.max_runs(design)
        verdict = self._decide(g.k, simplification, t, g.crit, why, value, t_ni > crit_ni, design.paired, cut, looks)
        return self._top_up(verdict, design, len(inc_values))

    def _top_up(self, verdict: Verdict, design: Design, n_inc: int) -> Verdict:
        """A "more" for the incumbent first where its mean is read on too few runs. Only for
        candidates that survive the screen (most are screened out, so most keeps never cost
        incumbent runs); paired, its mean is not read: it runs only on the seeds the pairs need."""
        deficit = 0 if design.paired else max(0, self.s.incumbent_runs - n_inc)
        if verdict.action != VerdictAction.MORE or not deficit:
            return verdict
        return Verdict(
            VerdictAction.MORE, verdict.reason, verdict.value, more_candidate_runs=0, more_incumbent_runs=deficit
        )

    @staticmethod
    def yardstick(design: Design, history: list[Experiment], skip: int | None = None) -> Noise:
        """The sd a candidate's statistic is measured in under `design` (`skip`: an experiment
        whose runs are left out of a paired sd, e.g. the candidate's own excess)."""
        if not design.paired:
            return noise_of(history)
        skipped = {skip} if skip is not None else frozenset()
        if design.bound:
            # The night measured no paired noise when the candidate began: the differences measured
            # since (its own pairs among them) are the evidence; until there are any, a bound.
            own = paired_noise_of(history, skip=skipped)
            if own.df >= 1:
                return own
            run = noise_of([e for e in history if e.id != skip])
            return Noise(math.sqrt(2) * run.sd, run.df)
        return paired_noise_of(history, skip=skipped)

    def _design(
        self, candidate: Experiment, inc_runs: list[tuple[Run, float]], n_inc: int, history: list[Experiment]
    ) -> tuple[Design, list[tuple[int, float, float]]]:
        """Paired or unpaired for this candidate, and its pairs: chosen from the noise measured
        before its first run (judges/paired.py), unpaired when its differences spread far
        beyond the paired noise."""
        ok = [r for r in candidate.runs if r.status == RunStatus.OK and r.value is not None]
        first = min((r.started for r in ok), default=math.inf)
        then = before(history, first)
        unpaired_then, paired_then = noise_of(then), paired_noise_of(then)
        crits = (self.critical_t(unpaired_then.df, n_inc), self.critical_t(paired_then.df, PAIRED))
        design = choose(unpaired_then, paired_then, n_inc, crits, self.s.paired_min_df, self.s.paired)
        if not design.paired:
            return design, []
        ordered = sorted(inc_runs, key=lambda rv: rv[0].started)
        pairs = differences(ok, {r.seed: v for r, v in ordered})  # the latest run per seed
        # The spread on the runs as measured: the selection correction moves only some partners.
        raw = differences(ok, {r.seed: r.value for r, _ in ordered})
        # Against the noise of the others: its own excess would otherwise widen the yardstick.
        p = spread_p([c - i for _, c, i in raw], self.yardstick(design, history, candidate.id))
        if p is not None and p < self.s.pair_p:
            return Design(False, f"unpaired (its differences spread beyond the paired noise: chance {p:.1e})"), []
        return design, pairs

    def _decide(
        self,
        n: int,
        simplification: bool,
        t: float,
        crit: float,
        why: str,
        value: float,
        non_inferior: bool = False,
        paired: bool = False,
        screen: float | None = None,
        max_runs: int | None = None,
    ) -> Verdict:
        if n == 1:
            screen = self.s.screen if screen is None else screen
            floor = min(-1.0, screen) if simplification else screen
            if t < floor:
                return Verdict(VerdictAction.DISCARD, "screened out: " + why, value)
            return Verdict(VerdictAction.MORE, "looks better, confirming: " + why, value, more_candidate_runs=1)
        if t > crit:
            return Verdict(VerdictAction.KEEP, ("confirmed (paired): " if paired else "confirmed: ") + why, value)
        last = n >= (self.s.max_runs if max_runs is None else max_runs)
        if simplification and last and non_inferior:
            return Verdict(
                VerdictAction.KEEP, f"simplification, not worse by {self.s.simplify_margin:g} sd: " + why, value
            )
        if t < self.s.futility and not simplification:
            return Verdict(VerdictAction.DISCARD, "not confirmed: " + why, value)
        if last:  # for want of evidence: the same files proposed again are run again (duplicates.py)
            return Verdict(VerdictAction.DISCARD, f"{UNDECIDED} {n} runs: " + why, value)
        return Verdict(VerdictAction.MORE, "confirming: " + why, value, more_candidate_runs=1)

    # --- drift (drift.py) -------------------------------------------------------------------
    def remeasure_due(self, incumbent: Experiment, history: list[Experiment]) -> bool:
        return remeasure_due(self.s.remeasure_every, incumbent, history)

    def drift(self, incumbent: Experiment, history: list[Experiment]) -> str | None:
        return drift_message(self.s.drift_z, incumbent, history)
