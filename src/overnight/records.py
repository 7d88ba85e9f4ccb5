"""The data model, in one place: what the journal stores, a run (run/) returns and the night reads.

An **experiment** is one candidate (a commit on top of its parent) and a **run** one seeded
execution of it (DESIGN.md). A `RunRequest` says what to execute, a `RunResult` what came of
it; the journal keeps the result as a `Run` row (`RunResult.record`). The statuses are enums
whose values are the journal's column text, so an existing journal reads back unchanged and a
comparison with the plain string (`run.status == "ok"`) still holds; code writes the member.

A judge answers with a `VerdictAction` (judges/base.py); the incumbent is the last experiment
kept (`incumbent`). Nothing here runs anything: this module imports no other of overnight's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any


class ExpStatus(str, Enum):
    PROPOSED = "proposed"
    RUNNING = "running"
    KEPT = "kept"
    DISCARDED = "discarded"
    CRASHED = "crashed"
    TIMEOUT = "timeout"
    INVALID = "invalid"
    REJECTED = "rejected"  # never run: touched a protected file, or did not apply
    OOM = "oom"  # killed by limits.memory_mb (results.tsv says crash)
    DUPLICATE = "duplicate"  # never run: the same files as an experiment already tried (its result copied)
    SCREENED = "screened"  # clearly worse at a fraction of the budget: no full-budget run (night/screen.py)

    @property
    def final(self) -> bool:
        return self not in (ExpStatus.PROPOSED, ExpStatus.RUNNING)

    @property
    def failed(self) -> bool:
        return self in (ExpStatus.CRASHED, ExpStatus.TIMEOUT, ExpStatus.INVALID, ExpStatus.REJECTED, ExpStatus.OOM)


class RunStatus(str, Enum):
    RUNNING = "running"  # in flight (journaled as it starts), or left so by a controller that died
    OK = "ok"
    CRASH = "crash"  # non-zero exit
    TIMEOUT = "timeout"  # killed at the hard timeout
    INVALID = "invalid"  # exited 0 but no finite metric, or a protected file differed
    INTERRUPTED = "interrupted"  # the controller stopped it (Ctrl-C, shutdown); will be re-run
    OOM = "oom"  # killed: its process tree went over limits.memory_mb
    OVER_BUDGET = "over-budget"  # trained or ran longer than the budget allows: discarded, flagged
    MISMATCH = "mismatch"  # the protected re-score in a fresh process disagrees: discarded, flagged
    READS_HELDOUT = "reads-heldout"  # a watched file (held-out data) was opened while it ran: discarded, flagged


# What a failed run makes of its experiment (a failed run decides it: no judge is asked).
FAILED_STATUS = {
    RunStatus.CRASH: ExpStatus.CRASHED,
    RunStatus.TIMEOUT: ExpStatus.TIMEOUT,
    RunStatus.INVALID: ExpStatus.INVALID,
    RunStatus.OOM: ExpStatus.OOM,
    RunStatus.OVER_BUDGET: ExpStatus.DISCARDED,  # over budget or re-score mismatch:
    RunStatus.MISMATCH: ExpStatus.DISCARDED,  # discarded, and flagged
    RunStatus.READS_HELDOUT: ExpStatus.DISCARDED,
}


class EventKind(StrEnum):
    """The kind of a journal event (journal.py's `events` table); the stored strings are what
    `status --json`, report.html and a user's own queries read, so they never change."""

    ABLATE = "ablate"
    BASELINE = "baseline"  # older journals only
    DRIFT = "drift"
    DUPLICATE = "duplicate"
    ENDPOINT = "endpoint"
    FALLBACK = "fallback"
    FALLBACK_END = "fallback-end"
    FITS_VALIDATION = "fits-validation"
    HELDOUT = "heldout"
    IGNORES_SEED = "ignores-seed"
    INCUMBENT_FAILED = "incumbent-failed"
    JOURNAL_TAMPERED = "journal-tampered"
    MODEL_UNUSABLE = "model-unusable"  # the model's last proposals could not be used: optuna stands in
    MODEL_USABLE = "model-usable"  # ... and one could again: the model proposes again
    NO_HELDOUT = "no-heldout"
    NOTE = "note"
    OOM = "oom"
    OUTSIDE_TAMPERED = "outside-tampered"
    OVER_BUDGET = "over-budget"
    PROMPT_WINDOW = "prompt-window"  # the model's context window the prompts are sized to
    READS_HELDOUT = "reads-heldout"
    REPLY_FORMAT = "reply-format"  # structured (JSON) replies refused by the server: text from then on
    REQUEUED = "requeued"
    RESCORE_MISMATCH = "rescore-mismatch"
    RESUME = "resume"
    SCREEN = "screen"
    SCREEN_OFF = "screen-off"
    SCREEN_PARTNER_FAILED = "screen-partner-failed"
    SETUP = "setup"
    SLOTS = "slots"
    SURVIVORS = "survivors"
    TRACKER = "tracker"
    VERIFY = "verify"


class VerdictAction(str, Enum):
    """A judge's answer (judges/base.py): keep, discard, or measure more first."""

    KEEP = "keep"
    DISCARD = "discard"
    MORE = "more"


@dataclass(frozen=True)
class RunRequest:
    """Everything needed to execute one seeded run of a commit."""

    commit: str
    seed: int
    run_dir: Path  # log and result file live here, outside the worktree
    worktree: Path
    protected_hashes: dict[str, str]
    extra_env: dict[str, str] = field(default_factory=dict)
    # Re-score inside the run, right after it (verify; direct callers). False (the local and
    # Ray executors): the controller has it re-scored later, in a slot of its own, and only when
    # the candidate is about to be kept (night/rescorer.py, run/scoring.py, executors/ray.py).
    rescore: bool = True
    budget: float | None = None  # a screen run's shorter budget (OVERNIGHT_BUDGET); None: the task's
    # The steps clock (`[task] clock = "steps"`): the commit's journaled seconds per token
    # (OVERNIGHT_COST, None before its first run measured it) and its parent's (OVERNIGHT_COST_REF).
    cost: float | None = None
    cost_ref: float | None = None


# The facts a run's journal row takes from its RunResult as they are (RunResult.record).
RESULT_FIELDS = (
    "status",
    "value",
    "exit_code",
    "wall_seconds",
    "training_seconds",
    "peak_memory_mb",
    "log_path",
    "log_tail",
    "error",
)


@dataclass
class RunResult:
    status: RunStatus
    value: float | None = None
    exit_code: int | None = None
    wall_seconds: float = 0.0
    training_seconds: float | None = None
    peak_memory_mb: float | None = None
    log_path: str = ""
    log_tail: str = ""
    error: str = ""
    # Harness-set facts only (rescored, held-out score, sandbox, watch, ray_dir...): the keep
    # reads from here, so nothing the candidate prints or writes may land in it.
    summary: dict = field(default_factory=dict)
    printed: dict = field(default_factory=dict)  # the log's `---` block: for display, never judged

    def to_dict(self) -> dict:
        d = asdict(self)
        d["status"] = self.status.value
        return d

    def stored_summary(self) -> dict:
        """The summary as the journal stores it: the harness's facts at the top level, the
        run's own `---` block under "printed", so that a key the candidate prints (say
        `rescored: 0.5`) can never be read back as the harness's."""
        if not self.printed:
            return dict(self.summary)
        return {**self.summary, "printed": {k: _json_safe(v) for k, v in self.printed.items()}}

    def record(self) -> dict:
        """The columns of a run's journal row taken from this result (journal.finish_run):
        RESULT_FIELDS, the stored summary, and `rescored` when it was re-scored inside the run
        (RunRequest.rescore), so that nothing is left to re-score before a keep (the summary
        holds only what the harness set, never the log's block)."""
        return {
            **{name: getattr(self, name) for name in RESULT_FIELDS},
            "summary": self.stored_summary(),
            "rescored": self.summary.get("rescored") if self.status == RunStatus.OK else None,
        }


@dataclass
class Run:
    """A run as journaled: its RunResult's facts (RESULT_FIELDS), where and when it ran."""

    id: int
    experiment_id: int
    seed: int
    status: RunStatus
    started: float
    ended: float | None = None
    slot: str | None = None
    node: str | None = None
    training_seconds: float | None = None
    wall_seconds: float | None = None
    exit_code: int | None = None
    peak_memory_mb: float | None = None
    value: float | None = None
    summary: dict = field(default_factory=dict)
    log_path: str | None = None
    log_tail: str | None = None
    error: str | None = None
    rescored: float | None = None  # the protected re-score's value, once it agreed with `value`
    budget: float | None = None  # the seconds it was given (OVERNIGHT_BUDGET); None: journaled before it was kept
    screen: bool = False  # a screen run (a fraction of the budget): in Experiment.screens, never judged

    def __post_init__(self):
        self.status = RunStatus(self.status)  # the journal's text (and tests' literals) as the enum


@dataclass
class Experiment:
    id: int
    tag: str
    parent_id: int | None
    base_commit: str
    commit_sha: str | None
    edits: dict[str, str]
    diff: str | None
    description: str
    proposer: str
    params: dict[str, Any]
    status: ExpStatus
    reason: str | None
    value: float | None
    created: float
    updated: float
    decided: float | None = None
    runs: list[Run] = field(default_factory=list)  # full-budget runs: what judges, verify and reports read
    screens: list[Run] = field(default_factory=list)  # screen runs at a fraction of the budget (night/screen.py)

    def __post_init__(self):
        self.status = ExpStatus(self.status)

    @property
    def cost(self) -> float | None:
        """Seconds per token under the steps clock: what the first of its runs (screens
        included) that reported one was charged; every later run is given it (OVERNIGHT_COST)."""
        first = _first_costed(self.screens + self.runs)
        return first.summary["cost"] if first is not None else None

    @property
    def cost_ref(self) -> float | None:
        """The reference that first run was given (OVERNIGHT_COST_REF): later runs get it too."""
        first = _first_costed(self.screens + self.runs)
        return first.summary.get("cost_ref") if first is not None else None

    @property
    def ok_values(self) -> list[float]:
        return [r.value for r in self.runs if r.status == RunStatus.OK and r.value is not None]

    @property
    def peak_memory_mb(self) -> float | None:
        mems = [r.peak_memory_mb for r in self.runs if r.peak_memory_mb is not None]
        return max(mems) if mems else None

    @property
    def last_run(self) -> Run | None:
        return self.runs[-1] if self.runs else None


def _first_costed(runs: list[Run]) -> Run | None:
    costed = [r for r in runs if isinstance((r.summary or {}).get("cost"), (int, float))]
    return min(costed, key=lambda r: r.id) if costed else None


def _json_safe(value):
    """A printed value SQLite's JSON can hold: `nan`, `inf` and integers past 64 bits as text (as
    floats they would make the stored summary invalid JSON, and every later json_patch fail)."""
    if (
        isinstance(value, float)
        and not math.isfinite(value)
        or isinstance(value, int)
        and not -(2**63) <= value < 2**63
    ):
        return str(value)
    return value


def incumbent(history: list[Experiment]) -> Experiment | None:
    """The current best: the experiment kept last (by `decided`; the id breaks a tie)."""
    kept = [e for e in history if e.status == ExpStatus.KEPT]
    return max(kept, key=lambda e: (e.decided or 0, e.id)) if kept else None
