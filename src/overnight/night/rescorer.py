"""Deferred re-scores: a candidate's runs scored again by protected code, each in a slot.

The protected re-score (`task.rescore`, see run/scoring.py) is what makes a run's metric
trustworthy, but it costs one more process per run. It matters only for a keep: a discarded
candidate's numbers move nothing. So a slot is handed its next run as soon as training ends,
and the scheduler asks for re-scores only when the judge's verdict on a candidate is "keep":
every ok run of it that the judge counted and that has not been re-scored yet is re-scored.

A re-score takes a slot as a run does (`dispatch`, before any queued run: a keep is never
starved by new candidates), and the scheduler starts no run in that slot until it ends. Never
beside a timed run: a re-score (and the held-out score inside it) loads the device and the
cores like training, so a run beside it measures the re-score (seen on the 2-core cpu preset:
two re-scores beside a candidate's run, load 6, its val_bpb the machine's, not the model's).
It runs with the pinning of the slot it took (GPU, threads), which is free of timed runs.

While they run the candidate is not the incumbent (other candidates are judged against the
old one, and their runs go on). Only a new candidate's first run, and the next proposal,
wait for the keep to land (scheduler._dispatch, _ask): started on the old incumbent a
candidate would be stale the moment the keep lands, and a stale winner is measured all over
again (the stale rule, state.py); a proposal would be built on the old incumbent. Starting it
at once made the candidate after every keep stale, even with one slot (seen in the tests);
waiting costs a slot the re-score's time once per keep, not once per run.

The baseline is kept without re-scores (the reference, see yardstick_runs). Under
`[heldout]` a keep also re-scores the yardstick's runs it is paired with, seed for seed, that
have no held-out score yet: the held-out score comes after an agreeing re-score.

When all have ended the scheduler journals each (`runs.rescored`, or the run's status
`mismatch` with the `rescore-mismatch` event) and then either discards the candidate or asks
the judge again, which keeps it now that every counted run is re-scored. A controller killed
in between journaled nothing for the unfinished ones and re-does them on resume: no keep
lands without a re-score, and none lands twice (the keep is one journal write).

Where a re-score runs is the executor's choice (`Executor.rescore`, given the slot): where the
run directory lives, which is never pruned before the decision, in a fresh worktree of the
candidate's commit (the run's own is removed when the run ends). The local executor re-scores
with the slot's pinning; on a Ray cluster the run directory lives on the worker's node and the
re-score runs there, asking Ray for what a run asks (executors/ray.py), or comes back LOST
(INTERRUPTED, summary["lost"]) when it is gone; keep.collect_rescores then turns the run into an
interrupted one, run again.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass

from overnight.executors.base import Executor, Slot
from overnight.night.state import Night
from overnight.records import Experiment, Run, RunRequest, RunResult, RunStatus
from overnight.task import TaskSpec


def _result(f: Future) -> RunResult:
    """A re-score that could not even run (git failed to check the commit out) keeps nothing."""
    try:
        return f.result()
    except Exception as exc:  # noqa: BLE001 - any failure of the harness here means: no keep
        return RunResult(RunStatus.MISMATCH, error=f"the protected re-score could not run: {exc}")


@dataclass(frozen=True)
class Held:
    """A slot's re-score: what the live view shows in its row."""

    future: Future  # the executor's
    exp_id: int  # the experiment the run is of
    run_id: int
    started: float  # time.time()


def _chain(done: Future, out: Future) -> None:
    """`out` (the future the rescorer holds for the keep) resolves as the executor's re-score did."""
    exc = done.exception()
    if exc is not None:
        out.set_exception(exc)
    else:
        out.set_result(done.result())


def unscored(exp: Experiment) -> list[Run]:
    """The runs the judge counts (ok, with a value) that no re-score has agreed with yet."""
    return [r for r in exp.runs if r.status == RunStatus.OK and r.value is not None and r.rescored is None]


def counted(exp: Experiment) -> list[Run]:
    return [r for r in exp.runs if r.status == RunStatus.OK and r.value is not None]


def may_be_rescored(exp: Experiment, run: Run, incumbent: Experiment | None) -> bool:
    """Whether `run` of `exp` may still be re-scored: not re-scored yet, and `exp` undecided or
    the incumbent (its runs are the yardstick a keep pairs with, see yardstick_runs). The
    executor keeps such runs' directories (adopt) and may free the others' (release)."""
    return run.rescored is None and (not exp.status.final or (incumbent is not None and exp.id == incumbent.id))


def needed(task: TaskSpec, exp: Experiment) -> list[Run]:
    """The runs of `exp` a keep of it needs re-scored (none when the task has no re-score)."""
    return unscored(exp) if task.rescore else []


def yardstick_runs(task: TaskSpec, exp: Experiment, target: Experiment, unavailable: set[int]) -> list[Run]:
    """The runs of `target` (the yardstick `exp` beat) that the held-out check pairs with
    `exp`'s, seed for seed, and that have no held-out score yet (`unavailable`: runs whose
    directory is gone, paired without). The baseline is kept without re-scores: it is the
    user's own code, the reference, not a candidate, and eight re-scores plus eight held-out
    scores cost a CPU night minutes before the first candidate was judged. Its runs get their
    held-out score (with the re-score it comes after) the first time a keep needs it, and only
    those."""
    if task.heldout is None or not task.rescore or target.id == exp.id:
        return []
    seeds = {r.seed for r in counted(exp)}
    return [r for r in unscored(target) if r.seed in seeds and r.id not in unavailable]


class Rescorer:
    def __init__(self, night: Night, executor: Executor):
        self.night = night
        self.ex = executor
        self.pending: dict[int, dict[int, Future]] = {}  # experiment id -> run id -> its re-score
        # Re-scores asked for and waiting for a slot (their futures in pending resolve when the
        # executor's do), and the slots re-scores hold now: slot name -> its re-score.
        self.waiting: list[tuple[int, Run, RunRequest, Future]] = []  # (experiment id, ...)
        self.holding: dict[str, Held] = {}
        self.parents: dict[int, int | None] = {}  # experiment id -> its parent (the yardstick it won against)
        self.unavailable: set[int] = set()  # yardstick runs whose directory is gone (a Ray node left)
        self.checks: set[int] = set()  # experiments whose re-score holds nothing (the baseline's check)
        self.owner: dict[int, int] = {}  # run id -> the experiment it is a run of (a yardstick's too)

    def running(self) -> set[int]:
        """Runs whose re-score is in progress, whichever keep asked for it."""
        return {run_id for runs in self.pending.values() for run_id, f in runs.items() if not f.done()}

    def start(
        self, exp: Experiment, runs: list[Run], others: dict[int, Experiment] | None = None, check: bool = False
    ) -> None:
        """Ask for re-scores of `runs` for the keep of `exp`: its own, and any of the experiments
        in `others` (its yardstick's, see yardstick_runs); each starts when it gets a slot
        (`dispatch`). `check`: a kept baseline's run, checked off the critical path
        (Lifecycle.finish returns it): `exp` is not busy meanwhile."""
        n = self.night
        if check:
            self.checks.add(exp.id)
        futures = self.pending.setdefault(exp.id, {})
        self.parents[exp.id] = exp.parent_id
        owners = {exp.id: exp, **(others or {})}
        for r in runs:
            owner = owners[r.experiment_id]
            self.owner[r.id] = owner.id
            # The run's own worktree path: free again (removed when the run ended), and swept
            # on resume with the rest of the tag's worktrees if this controller is killed.
            req = RunRequest(
                commit=owner.commit_sha,
                seed=r.seed,
                run_dir=n.paths.run_dir(owner.id, r.id),
                worktree=n.paths.run_worktree(owner.id, r.id),
                protected_hashes=n.protected_hashes,
            )
            futures[r.id] = Future()
            self.waiting.append((exp.id, r, req, futures[r.id]))

    def dispatch(self, free: list[Slot], checks: bool = True) -> None:
        """Start waiting re-scores in `free` slots (the slots they take are removed from it),
        in the order they were asked for; a run's own slot when free (the device it trained
        on), else the first. `checks`: whether a baseline's check may start too (not after
        --hours: it would be stopped at once)."""
        for item in list(self.waiting):
            exp_id, run, req, future = item
            if not free:
                return
            if not checks and exp_id in self.checks:
                continue
            slot = next((s for s in free if s.name == run.slot), free[0])
            free.remove(slot)
            self.waiting.remove(item)
            try:
                started = self.ex.rescore(run, req, run.value, slot)
            except Exception as exc:  # noqa: BLE001 - e.g. git could not pack the commit: no keep (_result)
                future.set_exception(exc)
                free.insert(0, slot)
                continue
            self.holding[slot.name] = Held(started, self.owner[run.id], run.id, time.time())
            started.add_done_callback(lambda f, out=future: _chain(f, out))

    def held(self) -> set[str]:
        """The slots a re-score holds now: no run starts in them until it ends."""
        for name, h in list(self.holding.items()):
            if h.future.done():
                del self.holding[name]
        return set(self.holding)

    def released(self) -> set[str]:
        """The slots whose re-score ended since the last look: free for runs again."""
        before = set(self.holding)
        return before - self.held()

    def held_by(self, slot: str) -> Held | None:
        """The re-score holding `slot` (it may have just ended), or None."""
        return self.holding.get(slot)

    @property
    def idle(self) -> bool:
        """No re-score pending, the baseline's check included."""
        return not self.pending

    def stop_waiting(self) -> None:
        """The night stops: re-scores still waiting for a slot never start (INTERRUPTED: nothing
        journaled, re-done on resume, like those stop_rescores stops)."""
        waiting, self.waiting = self.waiting, []
        for *_, future in waiting:
            future.set_result(RunResult(RunStatus.INTERRUPTED, error="stopped before it had a slot"))

    @property
    def busy(self) -> set[int]:
        return set(self.pending) - self.checks

    def moves(self, incumbent_id: int) -> bool:
        """Whether a pending keep would replace `incumbent_id` (a winner on top of it)."""
        return incumbent_id in self.parents.values()

    def futures(self) -> list[Future]:
        """The re-scores asked for that have not ended (the scheduler wakes when one ends)."""
        return [f for runs in self.pending.values() for f in runs.values() if not f.done()]

    def finished(self) -> list[tuple[int, dict[int, RunResult]]]:
        """Experiments whose every re-score has ended: (id, {run id: result}), removed from pending."""
        out = []
        for exp_id, runs in list(self.pending.items()):
            if all(f.done() for f in runs.values()):
                del self.pending[exp_id]
                self.parents.pop(exp_id, None)
                self.checks.discard(exp_id)
                out.append((exp_id, {run_id: _result(f) for run_id, f in runs.items()}))
        return out

    def close(self) -> None:
        """Stop what still runs or waits (its results are not journaled: re-done on resume)."""
        self.stop_waiting()
        self.ex.stop_rescores(wait=True)
