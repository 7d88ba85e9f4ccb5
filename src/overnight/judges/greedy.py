"""autoresearch's rule: keep a candidate whose single run beats the incumbent's value.

Kept for comparison. It keeps a change that does nothing about half the time, because one
noisy number is compared with another; the noise-aware judge exists for that reason.
"""

from __future__ import annotations

from overnight.judges.base import Judge, Verdict
from overnight.records import Experiment, VerdictAction
from overnight.task import Metric


class GreedyJudge(Judge):
    name = "greedy"

    def judge(self, candidate: Experiment, incumbent: Experiment, metric: Metric, history: list[Experiment]) -> Verdict:
        value = candidate.ok_values[0]
        best = incumbent.value
        if best is None or metric.better(value, best):
            return Verdict(VerdictAction.KEEP, f"{value:.6g} beats {best if best is None else f'{best:.6g}'}", value)
        return Verdict(VerdictAction.DISCARD, f"{value:.6g} does not beat {best:.6g}", value)
