"""The judge interface.

A judge looks at a candidate's runs and the incumbent's runs and answers one of three things:
keep, discard, or "measure more" (how many more seeded runs of the candidate and of the
incumbent it wants). The controller schedules the extra runs like any other run and asks
again. A judge never runs anything itself, so it does not care where runs execute.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from overnight.records import Experiment, VerdictAction
from overnight.task import Metric


@dataclass(frozen=True)
class Verdict:
    action: VerdictAction
    reason: str
    value: float | None = None  # the judged value of the candidate (e.g. mean of its runs)
    more_candidate_runs: int = 0
    more_incumbent_runs: int = 0
    incumbent_seeds: tuple[int, ...] = ()  # seeds some of those incumbent runs must use (partners for pairs)
    flags: tuple[str, ...] = ()  # warnings for the journal and status, e.g. "ignores-seed"

    def __post_init__(self):
        try:  # the member, also when given its text (a verdict rewritten with dataclasses.replace)
            object.__setattr__(self, "action", VerdictAction(self.action))
        except ValueError:
            raise ValueError(f"bad verdict action {self.action!r}") from None


class Judge(ABC):
    name: str = "judge"

    def baseline_runs(self) -> int:
        """How many seeded runs the unmodified baseline gets at the start."""
        return 1

    @abstractmethod
    def judge(self, candidate: Experiment, incumbent: Experiment, metric: Metric, history: list[Experiment]) -> Verdict:
        """Decide on a candidate whose runs so far all succeeded (failed runs never reach here)."""

    def remeasure_due(self, incumbent: Experiment, history: list[Experiment]) -> bool:
        """Whether the incumbent should be run again now (drift check). Default: never."""
        return False

    def drift(self, incumbent: Experiment, history: list[Experiment]) -> str | None:
        """After a re-measure: a message if the incumbent's newest run says the machine changed."""
        return None
