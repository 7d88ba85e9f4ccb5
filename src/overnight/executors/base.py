"""The executor interface: where a run executes, and nothing else.

The controller decides WHAT runs (which experiment, which seed) and journals it; an executor
decides WHERE: it owns a fixed set of slots (a GPU, a share of the CPU threads, a place on a
Ray cluster) and starts one run in a free slot, returning a future of its `RunResult`:

    for slot in executor.slots: ...               # what there is
    future = executor.start(job, slot)            # a run; never blocks on its end
    result = future.result()                      # RunResult, also for crashed candidates
    executor.adopt(runs)                          # a resumed night's runs awaiting re-scores
    executor.rescore(run, req, value, slot)       # before a keep, in a free slot, where the run directory is
    executor.stop_rescores()                      # the night stops: re-done on resume
    executor.release(run_ids)                     # decided: their run directories may go
    executor.stop_all(); executor.close()         # Ctrl-C; end of the night

A future never raises for the candidate's faults (a broken candidate is data). A run that
the executor lost (a Ray node died, the controller stopped it) comes back as
`RunStatus.INTERRUPTED`; the controller journals it and schedules it again. Proposers and
judges never see an executor. Adding one is one new file with a subclass.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field

from overnight.records import Run, RunRequest
from overnight.task import TaskSpec


@dataclass(frozen=True)
class Slot:
    """One place a run can execute. `env` is added to the run's environment (pinning)."""

    name: str  # unique and stable across restarts: the journal's runs.slot
    node: str  # where it is: "local", a Ray node
    env: dict[str, str] = field(default_factory=dict)
    gpu: str | None = None  # the device id it is pinned to, if any
    threads: int | None = None  # CPU threads it may use, if split

    def describe(self) -> dict:
        return {"slot": self.name, "node": self.node, "gpu": self.gpu, "threads": self.threads}


@dataclass(frozen=True)
class Job:
    """One seeded run of a commit, as journaled (`run_id`) before it starts: `request` says
    what to run, on the controller's machine (its run directory is where the log and result
    end up; its worktree, where a local executor checks the commit out). The executor adds
    the slot's pinning (`extra_env`) where it runs it."""

    run_id: int
    request: RunRequest


class Executor(ABC):
    name: str = "executor"

    def __init__(self, task: TaskSpec):
        self.task = task

    @property
    @abstractmethod
    def slots(self) -> list[Slot]:
        """The slots, in a stable order; the controller keeps at most one run in each."""

    @abstractmethod
    def start(self, job: Job, slot: Slot) -> Future:
        """Start `job` in `slot` (free); the future resolves to its RunResult."""

    def node_of(self, job: Job) -> str | None:
        """Where the run of `job` really executed, once known (Ray places tasks itself)."""
        return None

    def adopt(self, runs: Iterable[Run]) -> None:
        """At the start of a night: ended runs of undecided experiments not re-scored yet (a
        resumed night's); an executor that keeps run directories away from here finds theirs."""

    @abstractmethod
    def rescore(self, run: Run, req: RunRequest, value: float, slot: Slot) -> Future:
        """Re-score ended `run` (its reported `value`) where its run directory lives, in free
        `slot` as a run would be (night/rescorer.py says when): a fresh checkout of its commit,
        the task's protected re-score, then its held-out score (run/scoring.py). It loads the
        device and cores as a run does, so it must never share them with a timed run: the
        controller starts nothing in `slot` until it ends, and the executor runs it with what a
        run in `slot` gets (its pinning, or on a cluster the resources a run asks for). The
        future resolves to OK with summary["rescored"], MISMATCH, or INTERRUPTED (stopped;
        summary["lost"]: the run directory is gone, the run must be run again)."""

    def stop_rescores(self, wait: bool = False) -> None:
        """Stop the re-scores in progress (their results are not journaled: re-done on resume);
        `wait`: until they have ended. Default: they stop with the executor (stop_all, close)."""

    def release(self, run_ids: Iterable[int]) -> None:
        """These runs' experiments are decided: what is kept for their re-scores may go."""

    def stop_all(self) -> None:
        """Stop every run now; their futures resolve to INTERRUPTED results."""

    def close(self) -> None:
        """Release the slots (threads, cluster connection) at the end of the night."""
