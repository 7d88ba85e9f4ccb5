"""Deferred re-scores: a candidate's runs scored again by protected code, off the slots.

The protected re-score (`task.rescore`, see run/scoring.py) is what makes a run's metric
trustworthy, but it costs one more process per run. It matters only for a keep: a discarded
candidate's numbers move nothing. So the local executor hands a slot its next run as soon as
training ends, and the scheduler asks for re-scores only when the judge's verdict on a
candidate is "keep": every ok run of it that the judge counted and that has not been
re-scored yet is re-scored here, on threads of its own, next to the slots' next runs.

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

Where a re-score runs is the executor's choice (`Executor.rescore`): where the run directory
lives, which is never pruned before the decision, in a fresh worktree of the candidate's
commit (the run's own is removed when the run ends). The local executor re-scores on threads
of its own beside the slots; on a Ray cluster the run directory lives on the worker's node and
the re-score runs there (executors/ray.py), or comes back LOST (INTERRUPTED, summary["lost"])
when it is gone; the keep pipeline then turns the run into an interrupted one, run again.
"""

from __future__ import annotations

from concurrent.futures import Future

from overnight.executors.base import Executor
from overnight.night.state import Night
from overnight.records import Experiment, Run, RunRequest, RunResult, RunStatus


def _result(f: Future) -> RunResult:
    """A re-score that could not even run (git failed to check the commit out) keeps nothing."""
    try:
        return f.result()
    except Exception as exc:  # noqa: BLE001 - any failure of the harness here means: no keep
        return RunResult(RunStatus.MISMATCH, error=f"the protected re-score could not run: {exc}")


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


class Rescorer:
    def __init__(self, night: Night, executor: Executor):
        self.night = night
        self.ex = executor
        slots = executor.slots
        # A slot's pinning (GPU, threads) goes with its runs' re-scores: they share the device
        # with the slot's next run, as the in-run re-score shared it with the run.
        self.env_of = {s.name: s.env for s in slots}
        self.pending: dict[int, dict[int, Future]] = {}  # experiment id -> run id -> its re-score
        self.parents: dict[int, int | None] = {}  # experiment id -> its parent (the yardstick it won against)
        self.unavailable: set[int] = set()  # yardstick runs whose directory is gone (a Ray node left)
        self.checks: set[int] = set()  # experiments whose re-score holds nothing (the baseline's check)
        self.owner: dict[int, int] = {}  # run id -> the experiment it is a run of (a yardstick's too)

    def needed(self, exp: Experiment) -> list[Run]:
        return unscored(exp) if self.night.task.rescore else []

    def yardstick_runs(self, exp: Experiment, target: Experiment) -> list[Run]:
        """The runs of `target` (the yardstick `exp` beat) that the held-out check pairs with
        `exp`'s, seed for seed, and that have no held-out score yet. The baseline is kept
        without re-scores: it is the user's own code, the reference, not a candidate, and eight
        re-scores plus eight held-out scores cost a CPU night minutes before the first
        candidate was judged. Its runs get their held-out score (with the re-score it comes
        after) the first time a keep needs it, and only those."""
        if self.night.task.heldout is None or not self.night.task.rescore or target.id == exp.id:
            return []
        seeds = {r.seed for r in counted(exp)}
        return [r for r in unscored(target) if r.seed in seeds and r.id not in self.unavailable]

    def running(self) -> set[int]:
        """Runs whose re-score is in progress, whichever keep asked for it."""
        return {run_id for runs in self.pending.values() for run_id, f in runs.items() if not f.done()}

    def start(
        self, exp: Experiment, runs: list[Run], others: dict[int, Experiment] | None = None, check: bool = False
    ) -> None:
        """Re-score `runs` for the keep of `exp`: its own, and any of the experiments in
        `others` (its yardstick's, see yardstick_runs). `check`: a kept baseline's run, checked
        off the critical path (scheduler._check_rescore): `exp` is not busy meanwhile."""
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
                extra_env=self.env_of.get(r.slot or "", {}),
            )
            futures[r.id] = self.ex.rescore(r, req, r.value)

    @property
    def busy(self) -> set[int]:
        return set(self.pending) - self.checks

    def moves(self, incumbent_id: int) -> bool:
        """Whether a pending keep would replace `incumbent_id` (a winner on top of it)."""
        return incumbent_id in self.parents.values()

    def futures(self) -> list[Future]:
        """The re-scores still running (the scheduler wakes when one ends)."""
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
        """Stop what still runs (its results are not journaled: re-done on resume)."""
        self.ex.stop_rescores(wait=True)
