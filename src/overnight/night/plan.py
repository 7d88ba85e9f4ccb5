"""The plan: the lifecycle's requests (lifecycle.py) turned into queued runs and re-scores.

    plan            each undecided experiment with nothing queued or in flight is asked what
                    it needs (`Lifecycle.next`): its runs are queued (the baseline's seeds all
                    at once, a candidate's screen run or first run, what the judge asks for),
                    its re-scores started (rescorer.py), or its end applied (`Lifecycle.finish`)
    the incumbent   re-run from time to time (the judge's drift check)
    a run's end     handed to the lifecycle (`Lifecycle.run_ended`); a lost run goes first
    re-scores' end  journaled (keep.py); a disagreement ends the candidate (the lifecycle)

The plan reads the journal only: an experiment is asked only when none of its runs, nor its
yardstick's, is queued or in flight (`busy`), so every verdict sees settled numbers and a
resumed controller reaches the same verdicts.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import NamedTuple

from overnight.errors import OvernightError
from overnight.executors.base import Job, Slot
from overnight.night.keep import Keeper
from overnight.night.lifecycle import Lifecycle
from overnight.night.requests import Finish, Rescore, Runs, Want
from overnight.night.rescorer import Rescorer
from overnight.night.state import Night
from overnight.records import Experiment, ExpStatus, RunResult, RunStatus


class Plan(NamedTuple):
    wants: list[Want]  # runs to queue
    again: bool  # the journal changed (an experiment finished): plan again on fresh history


@dataclass
class Flight:
    want: Want
    exp: Experiment
    job: Job
    slot: Slot
    future: Future
    started: float  # time.time()


class Planner:
    def __init__(self, night: Night, rescorer: Rescorer, busy: Callable[[], set[int]]):
        self.night = night
        self.rescorer = rescorer
        self.keeper = Keeper(night, rescorer)
        self.lifecycle = Lifecycle(night)
        self.busy = busy  # experiments with a run queued, in flight or being re-scored (the scheduler's)

    @property
    def screen_budget(self) -> float:
        return self.lifecycle.screener.budget

    def plan(self, history: list[Experiment], stopped: bool) -> Plan:
        """The runs to queue, re-scores started, or an experiment finished (then `again`: the
        journal changed in a way that needs re-reading, and the scheduler plans again)."""
        n, h, wants = self.night, history, []
        if not h:
            n.add_baseline()
            return Plan([], again=True)
        if h[0].status.final and h[0].status != ExpStatus.KEPT:  # failed, or discarded (budget, re-score)
            raise OvernightError(
                f"the baseline #{h[0].id} failed ({h[0].status.value}) — fix the task first "
                f"(`overnight show {h[0].id}`), then start a new --tag"
            )
        view = self.lifecycle.look(
            h,
            busy=self.busy(),
            rescoring=self.rescorer.running(),
            unavailable=self.rescorer.unavailable,
            stopped=stopped,
        )
        for e in h:
            if e.status.final or e.id in view.busy:
                continue
            req = self.lifecycle.next(e, view)
            if isinstance(req, Finish):
                check = self.lifecycle.finish(e, req, stopped)
                if check is not None:
                    self._rescore(check)
                if req.judged:
                    wants += self.drift_check()
                return Plan(wants, again=True)
            if isinstance(req, Runs):
                wants += req.wants
                view.busy |= {w.exp_id for w in req.wants} | {req.yardstick} - {None}
            elif isinstance(req, Rescore):
                self._rescore(req)
        return Plan(wants, again=False)

    def _rescore(self, req: Rescore) -> None:
        others = {req.yardstick.id: req.yardstick} if req.yardstick is not None else None
        self.rescorer.start(req.exp, list(req.runs), others, check=req.check)

    def drift_check(self) -> list[Want]:
        """Drift: re-run the incumbent from time to time, so a machine that got slower or
        faster shows up in status instead of silently biasing keeps."""
        h = self.night.journal.experiments(self.night.tag)
        inc = self.night.incumbent(h)
        if inc is not None and inc.id not in self.busy() and self.night.judge.remeasure_due(inc, h):
            return [Want(inc.id, remeasure=True, drift=True)]
        return []

    def begin(self, want: Want, history: list[Experiment]) -> Experiment | None:
        """The experiment a queued run is of, ready to run: a candidate's commit made (its first
        run), or None when it may not run (decided, or ended now: rejected, a duplicate)."""
        exp = self.night.journal.experiment(want.exp_id)
        if want.remeasure:
            return exp
        if exp.status.final:
            return None
        return self.lifecycle.begin(exp, history)

    def after_run(self, f: Flight, res: RunResult, stopping: bool) -> Runs | None:
        """What a run's end means (the lifecycle's call); the runs to queue again (a lost one)."""
        return self.lifecycle.run_ended(f.want, f.job.run_id, f.slot.name, res, stopping)

    def after_rescores(self, stopping: bool) -> bool:
        """Journal the re-scores that ended; True when a decision may have changed."""
        replan, bad_ones = self.keeper.collect_rescores(stopping)
        for exp, bad in bad_ones:
            self.lifecycle.rescore_failed(exp, bad)
        return replan

    # --- what holds a queued run back (scheduler._dispatch) ----------------------------------------
    def cost_pending(self, exp: Experiment, flights: dict[str, Flight]) -> bool:
        """Under the steps clock, whether a run of `exp` is in flight while its cost is unknown:
        that first run measures the seconds per token every later run of the commit is given,
        so the next one waits for it (one run's delay, with several slots, once per candidate)."""
        return (
            self.night.task.clock == "steps"
            and exp.cost is None
            and any(f.want.exp_id == exp.id for f in flights.values())
        )

    @staticmethod
    def candidate_awaits_judgement(history: list[Experiment]) -> bool:
        """Whether an undecided candidate has an ended run (before the baseline is kept: it
        waits to be judged against it)."""
        return any(
            e.parent_id is not None
            and not e.status.final
            and any(r.status not in (RunStatus.RUNNING, RunStatus.INTERRUPTED) for r in e.runs)
            for e in history
        )
