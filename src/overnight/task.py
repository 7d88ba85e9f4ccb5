"""The task spec: the frozen dataclasses `overnight.toml` is read into, and their defaults.

Any git repository with that file is a task; task_load.py reads and checks it, once. Each
setting is defined here once; the CLI may override `budget` (and nothing it does not name).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from overnight.errors import TaskSpecError


@dataclass(frozen=True)
class Metric:
    """The objective: its name, its direction, and where its value comes from."""

    name: str = "val_bpb"
    goal: str = "minimize"
    source: str = "result-file"
    pattern: str = ""

    @property
    def sign(self) -> int:
        """+1 when lower is better: `sign * value` is always 'lower is better'."""
        return 1 if self.goal == "minimize" else -1

    @property
    def worst(self) -> float:
        return math.inf * self.sign

    def better(self, a: float, b: float) -> bool:
        """Strictly better: a beats b."""
        return self.sign * a < self.sign * b

    def improvement(self, new: float, old: float) -> float:
        """How much `new` improves on `old`, positive when better, in metric units."""
        return self.sign * (old - new)


@dataclass(frozen=True)
class Limits:
    """What the harness enforces from outside the candidate's process (`[limits]`).

    A run is over budget when the training time its result reports exceeds
    `budget * (1 + budget_tolerance) + BUDGET_SLACK`, when the training time it measured itself
    (`measured_seconds`, the steps clock) exceeds `budget * (1 + measured_tolerance) +
    BUDGET_SLACK`, when its wall time exceeds `budget + overhead` (start-up and evaluation
    included), or when its process tree used more CPU time than its cores can give in that
    wall time: discarded and flagged, whatever its metric. Wall and CPU time are measured by
    the harness, so they hold even against a candidate that fakes its result file; the reported
    figures come from the task's protected code, which runs in the candidate's process.
    """

    overhead: float | None = None  # seconds of start-up + evaluation allowed; None: derived
    budget_tolerance: float = 0.1  # relative slack on the reported training time
    # Relative slack on the training time a run measured itself (`measured_seconds`, the steps
    # clock's measure) over its budget: a run whose cost was taken from its commit's first run
    # or its parent (within the task's tolerance) may measure somewhat more; twice is cheating.
    # A shared machine drifts too: on a 2-core VM the same baseline commit measured 36 % more
    # per token three minutes after its first run, quiet (2026-12-08), which 0.35 called cheating.
    measured_tolerance: float = 1.0
    memory_mb: float | None = None  # peak RSS of the run's process tree; over -> killed, `oom`
    log_mb: float = 64.0  # the log keeps its first and last log_mb/2; the rest is dropped
    disk_reserve_mb: float = 256.0  # a run is killed when the disk's free space falls below this
    # "auto" (the default): sandboxed where the machine has one (doctor says), else not; "on":
    # every run fails where none works; "off". Linux: no network, the repository, HOME and the
    # interpreter's site-packages read-only but for the run's dirs (run/sandbox.py).
    sandbox: str = "auto"
    # More directories the sandboxed run may write (e.g. a compile cache); `$OVERNIGHT_CACHE`
    # and `~` are expanded.
    sandbox_writable: tuple[str, ...] = ()

    def wall_limit(self, budget: float) -> float:
        return budget + (self.overhead if self.overhead is not None else 30.0 + budget / 2)

    def training_limit(self, budget: float) -> float:
        return budget * (1 + self.budget_tolerance) + BUDGET_SLACK

    def measured_limit(self, budget: float) -> float:
        return budget * (1 + self.measured_tolerance) + BUDGET_SLACK


BUDGET_SLACK = 1.0  # seconds: timer granularity and the last step that crosses the budget

# `[task] clock`: "wall" (the default) counts the budget in wall seconds, right where the device
# is the run's own (a GPU); "cpu" in the run's CPU seconds divided by its threads (the wall time
# it would have taken alone), so other work on a shared CPU cannot shorten its training;
# "tokens" in the compute the baseline did in the budget, measured once at the task's setup (a
# seed then trains the same steps twice, whatever the load; a speed-up buys nothing); "steps" in
# the tokens the budget buys at each commit's own seconds per token, measured by its first run
# without what others' load added and journaled for its later runs (OVERNIGHT_COST): a change
# that costs more per step trains less, and a seed trains the same steps twice.
CLOCKS = ("wall", "cpu", "tokens", "steps")  # the first is the default
MAX_BUDGET = 7 * 24 * 3600  # seconds: a run's budget over a week is a typo (1e308), not a plan


@dataclass(frozen=True)
class Heldout:
    """`[heldout]`: a slice of data in neither split, scored by harness code after each run.

    `command build OUT` (run once, in a directory holding the protected files) writes the
    held-out data to OUT, a path the harness chooses under `.overnight/heldout/`; `command score`
    (in the run's worktree, the data on stdin) writes `{"heldout_<metric>": x}` to
    $OVERNIGHT_RESULT. A keep needs held-out gain >= `min_share` * metric gain - `max_gap`
    (gains over the yardstick); a candidate below that fitted the validation data: not kept
    (`fits-validation`). min_share = 1 asks the whole gain back. See heldout_store.py."""

    command: str
    max_gap: float
    min_share: float = 0.0


DEFAULT_HELDOUT_GAP = 0.05  # metric units; nanogpt's cpu preset: see docs/task-spec.md's measured figures
DEFAULT_HELDOUT_SHARE = 0.25  # of the metric gain; ditto


@dataclass(frozen=True)
class TaskSpec:
    root: Path
    command: str
    editable: tuple[str, ...]
    protected: tuple[str, ...]
    budget: float
    metric: Metric
    # What the run counts its budget with, passed as OVERNIGHT_CLOCK (CLOCKS). The harness's own
    # wall-time check (budget + limits.overhead) holds whichever the task chooses.
    clock: str = CLOCKS[0]
    timeout_setting: float | None = None  # task.timeout as written; None means derived from budget
    # The command does not read OVERNIGHT_BUDGET: its budget is set in its protected code
    # (autoresearch's TIME_BUDGET). No other budget can be given: no --budget, no screen runs.
    fixed_budget: bool = False
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the command
    # Credential-looking variables of the user's environment a run may still read (credentials.py)
    pass_env: tuple[str, ...] = ()
    knobs: dict[str, Any] = field(default_factory=dict)  # declared knob ranges, see knobs.py
    limits: Limits = field(default_factory=Limits)
    # A protected command that scores the run again in a fresh process (see runner.rescore).
    rescore: str | None = None
    rescore_tolerance: float = 1e-6  # relative difference allowed between the two scores
    # A protected command run once before each night's first run, outside every run's clock and
    # timeout: data cache, compile cache warm-up (setup.py). Its own time limit, in seconds.
    setup: str | None = None
    setup_timeout: float = 1800.0
    heldout: Heldout | None = None  # `[heldout]`, see Heldout
    # Files no run may open (held-out data of the task's own): watched while each run is alive
    # (Linux inotify); an open discards the run (`reads-heldout`). Relative to the repository.
    watch: tuple[str, ...] = ()

    @property
    def timeout(self) -> float:
        """Hard wall-clock kill; follows the budget unless the file set it explicitly."""
        if self.timeout_setting is not None and self.timeout_setting > self.budget:
            return self.timeout_setting
        return default_timeout(self.budget)

    def with_budget(self, budget: float | None) -> TaskSpec:
        """The spec with a budget given on the command line."""
        if budget is None or budget == self.budget:
            return self
        if self.fixed_budget:
            raise TaskSpecError(
                f"this task's budget is fixed at {self.budget:g} s by its own code (task.fixed_budget) — "
                "drop --budget, or change the budget in the protected code and in overnight.toml"
            )
        if not math.isfinite(budget) or budget <= 0:
            raise TaskSpecError(f"--budget must be positive, got {budget} — pass seconds, e.g. --budget 60")
        return replace(self, budget=float(budget))


def with_clock(task: TaskSpec, clock: str | None) -> TaskSpec:
    """The spec with another clock (`overnight verify --clock`); None keeps the task's."""
    if clock is None or clock == task.clock:
        return task
    if clock not in CLOCKS:
        raise TaskSpecError(f"--clock {clock!r} is not a clock — use {', '.join(CLOCKS)}")
    return replace(task, clock=clock)


def default_timeout(budget: float) -> float:
    return 2 * budget + 60


def file_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
