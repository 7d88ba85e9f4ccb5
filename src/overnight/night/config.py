"""What a night is asked to do (RunConfig: the CLI's flags) and whom it tells (Observer)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from overnight.errors import OvernightError
from overnight.judges.noise import NoiseSettings
from overnight.night.screen import ScreenSettings
from overnight.night.tags import check_tag
from overnight.proposers import ProposerOptions
from overnight.records import Experiment
from overnight.task import MAX_BUDGET

MAX_SEED = 2**31 - 1  # --seed seeds the search: numpy and Optuna take 32-bit seeds


def check_budget(budget: float | None) -> None:
    """--budget of run, verify and ablate: seconds, above 0 and at most MAX_BUDGET."""
    if budget is not None and not (math.isfinite(budget) and 0 < budget <= MAX_BUDGET):
        raise OvernightError(f"--budget must be seconds, above 0 and at most a week, got {budget:g} — e.g. --budget 60")


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

    def __post_init__(self) -> None:
        """Every option checked where it is defined, in the words of the CLI flag that sets it:
        a bad value is one line and exit code 2 before anything is written (the CLI only parses)."""
        if self.experiments is not None and self.experiments < 1:
            raise OvernightError("--experiments must be at least 1 (the baseline counts as one)")
        if self.hours is not None and not (math.isfinite(self.hours) and self.hours > 0):
            raise OvernightError(
                f"--hours must be a positive number, got {self.hours} — e.g. --hours 8, or leave it "
                "out to run until --experiments or Ctrl-C"
            )
        check_budget(self.budget)
        if not 0 <= self.seed <= MAX_SEED:
            raise OvernightError(f"--seed must be from 0 to {MAX_SEED}, got {self.seed} — pick a smaller seed")
        if self.tag is not None:
            check_tag(self.tag)
        self.proposer_options.check_numbers()
        agent = self.proposer_options.agent
        if agent is not None and self.proposer != "agent":
            raise OvernightError(f"--agent {agent} picks the coding agent of --proposer agent — add --proposer agent")
        if self.slots is not None and self.slots < 1:
            raise OvernightError("--slots must be at least 1")
        if self.gpus is not None and (
            not self.gpus or not all(g.isdigit() or g.startswith(("GPU-", "MIG-")) for g in self.gpus)
        ):
            raise OvernightError(
                f"--gpus needs device ids (indices or GPU-/MIG- UUIDs), got {','.join(self.gpus)!r} — e.g. --gpus 0,1"
            )
        if self.ray_address is not None and self.executor != "ray":
            raise OvernightError("--ray-address needs --executor ray")
        fraction = self.screening.fraction
        if not 0 < fraction < 1:
            raise OvernightError(f"--screen-fraction must be between 0 and 1, got {fraction} — e.g. 0.25")

    def resolved(self, task=None, off: str | None | object = ...) -> RunConfig:
        """The defaults that depend on other fields and on the task made explicit (as journaled
        with the tag): screening needs the noise judge and a task that takes its budget from
        OVERNIGHT_BUDGET (not `task.fixed_budget`). `off`: screen_off(task), when the caller
        has it already (it asks git)."""
        if self.screen is not None:
            return self
        return replace(self, screen=(self.screen_off(task) if off is ... else off) is None)

    def screen_off(self, task) -> str | None:
        """Why screening is off by default for `task` ('' where there is nothing to say: another
        judge, a fixed budget the spec declares), None where it is on."""
        if self.judge != "noise" or getattr(task, "fixed_budget", False):
            return ""
        return ignores_budget(task)


BUDGET_VAR = "OVERNIGHT_BUDGET"


def ignores_budget(task) -> str | None:
    """Why a screen run of `task` would not be short (None where it may be): neither its command
    nor any file committed in its repository names OVERNIGHT_BUDGET, so a run given a quarter of
    the budget trains as long as a full one, and a screen would pay for each candidate twice."""
    root = getattr(task, "root", None)
    if root is None or BUDGET_VAR in getattr(task, "command", ""):
        return None
    from overnight import gitops

    found = gitops.run_git(
        ["-C", str(root), "grep", "-q", "-I", "-F", BUDGET_VAR, "--", ".", ":(exclude)overnight.toml"],
        capture_output=True,
    )
    if found.returncode != 1:  # 0: named somewhere; anything else: git could not say, so assume it is read
        return None
    return (
        f"no file of the task names {BUDGET_VAR} (nor its command): a shorter budget would not make a "
        "run shorter, so candidates are not screened"
    )


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
