"""What a night is asked to do (RunConfig: the CLI's flags) and whom it tells (Observer)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from overnight.judges.noise import NoiseSettings
from overnight.night.screen import ScreenSettings
from overnight.proposers import ProposerOptions
from overnight.records import Experiment


@dataclass(frozen=True)
class RunConfig:
    tag: str | None = None  # None: resume the latest tag, or start one named after today
    proposer: str = "optuna"
    proposer_options: ProposerOptions = field(default_factory=ProposerOptions)  # llm, agent, hybrid
    judge: str = "noise"
    noise: NoiseSettings = field(default_factory=NoiseSettings)  # settings of the noise judge
    experiments: int | None = None  # total for the tag, baseline included
    hours: float | None = None  # wall-clock limit of this invocation
    budget: float | None = None  # overrides task.budget
    # A short screen run before full-budget runs (night/screen.py). None: on with the noise
    # judge (the only one it works with): the night benchmark's default night found more
    # verified gain per hour with it (docs/figures.md, "The night benchmark").
    screen: bool | None = None
    screening: ScreenSettings = field(default_factory=ScreenSettings)
    seed: int = 0  # the search's seed (optuna, random); run seeds come from the night's secret
    # The secret run seeds derive from (night/seeding.py): None draws one; "" gives seed + i, as
    # nights before secrets ran (a test or benchmark that fixes its seeds). Not a CLI option.
    seed_secret: str | None = None
    executor: str = "local"  # local | ray
    slots: int | None = None  # runs at once; None: one per GPU (local), the cluster's size (ray), else 1
    gpus: tuple[str, ...] | None = None  # local: pin slots to these device ids; None: detect
    ray_address: str | None = None  # ray: the cluster to join; None: start a local one
    log_to: tuple[str, ...] = ()  # trackers each finished experiment is sent to (report/trackers.py)

    def resolved(self, task=None) -> RunConfig:
        """The defaults that depend on other fields and on the task made explicit (as journaled
        with the tag): screening needs the noise judge and a task that takes its budget from
        OVERNIGHT_BUDGET (not `task.fixed_budget`)."""
        if self.screen is not None:
            return self
        fixed = bool(getattr(task, "fixed_budget", False))
        return replace(self, screen=self.judge == "noise" and not fixed)


class Observer:
    """What the controller tells the outside (the CLI's live view). No-op by default.
    Called from the controller's thread only."""

    def experiment_started(self, exp: Experiment, run_index: int) -> None: ...
    def progress(self, exp: Experiment, elapsed: float) -> None: ...
    def experiment_finished(self, exp: Experiment) -> None: ...
    def message(self, text: str) -> None: ...
    def night_over(self, history: list[Experiment]) -> None:
        """The night has ended (its whole history): the trackers' summary (report/trackers.py)."""

    def slots(self, rows: list[dict]) -> None:
        """Every slot: {slot, node, gpu, experiment, description, elapsed} (None when idle)."""
