"""The plan: what each undecided experiment needs next, and what a finished run means for it.

    the baseline        its seeds all at once (the judge's first noise estimate); kept when
                        they are in, without re-scores (the reference: rescorer.py says why)
    a candidate         its first run (with --screen, a short screen run first: screen.py);
                        then the keep pipeline (keep.py): the judge's verdict,
                        more runs of it and of its yardstick, the re-scores, the decision
    the incumbent       re-run from time to time (the judge's drift check)
    a finished run      a failed one ends its experiment (crash, timeout, invalid, oom, over
                        budget, re-score mismatch, held-out read: flagged); a lost one (a dead
                        Ray node) runs again; a re-run of the incumbent updates its value

The plan reads the journal only: an experiment is judged when none of its runs, nor its
yardstick's, is queued or in flight (`busy`), so every verdict sees settled numbers and a
resumed controller reaches the same verdicts.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from overnight.errors import OvernightError
from overnight.executors.base import Job, Slot
from overnight.judges.stats import mean
from overnight.night.keep import Keeper, Step
from overnight.night.screen import Screener, ScreenStep
from overnight.night.state import Night
from overnight.records import FAILED_STATUS, EventKind, Experiment, ExpStatus, RunResult, RunStatus

MAX_INCUMBENT_FAILURES = 3
FLAGGED = {
    RunStatus.OVER_BUDGET: EventKind.OVER_BUDGET,
    RunStatus.OOM: EventKind.OOM,
    RunStatus.MISMATCH: EventKind.RESCORE_MISMATCH,
    RunStatus.READS_HELDOUT: EventKind.READS_HELDOUT,
}


@dataclass
class Want:
    """A run waiting for a slot: one more seeded replicate of `exp_id`."""

    exp_id: int
    remeasure: bool = False  # a re-measure of a kept experiment (its status stays kept)
    drift: bool = False  # a drift check: compare it with the earlier runs when it ends
    priority: int = 0  # 0: finishes a decision in progress; 1: a candidate's first run
    seed: int | None = None  # the seed it must run under (a partner for a pair); None: the lowest unused
    screen: bool = False  # a screen run: a fraction of the budget, never judged (screen.py)


@dataclass
class Flight:
    want: Want
    exp: Experiment
    job: Job
    slot: Slot
    future: Future
    started: float  # time.time()


class Planner:
    def __init__(self, night: Night, keeper: Keeper, queue: list[Want], busy: Callable[[], set[int]]):
        self.night = night
        self.keeper = keeper
        self.queue = queue  # the scheduler's: runs waiting for a slot
        self.busy = busy  # experiments with a run queued, in flight or being re-scored
        self.screener = Screener(night)

    def plan(self, history: list[Experiment], stopped: bool) -> bool:
        """Queue runs or decide; True when the journal changed in a way that needs re-reading."""
        n, h = self.night, history
        if not h:
            n.add_baseline()
            return True
        if h[0].status.final and h[0].status != ExpStatus.KEPT:  # failed, or discarded (budget, re-score)
            raise OvernightError(
                f"the baseline #{h[0].id} failed ({h[0].status.value}) — fix the task first "
                f"(`overnight show {h[0].id}`), then start a new --tag"
            )
        inc = n.incumbent(h)
        by_id = {e.id: e for e in h}
        busy = self.busy()
        screening = self.screener.on
        if screening:
            self.screener.check(h)
            screening = self.screener.on
        for e in h:
            if e.status.final or e.id in busy:
                continue
            done = [r for r in e.runs if r.status != RunStatus.INTERRUPTED]
            ended = [*done, *(r for r in e.screens if r.status != RunStatus.INTERRUPTED)]
            failed = [r for r in ended if r.status not in (RunStatus.OK, RunStatus.RUNNING)]
            if failed:  # journaled by a controller killed before it could decide
                n.finish(e, FAILED_STATUS[failed[0].status], failed[0].error or "failed")
                return True
            if e.parent_id is None:  # the baseline: several seeds at once, the first noise estimate
                need = n.judge.baseline_runs() - len(done)
                if need <= 0:  # kept without re-scores: the reference (Rescorer.yardstick_runs says why)
                    n.finish(e, ExpStatus.KEPT, "baseline", mean(e.ok_values))
                    self.keeper.check_rescore(n.journal.experiment(e.id), stopped)
                    return True
                self.queue += [Want(e.id) for _ in range(need)]
                continue
            # Stale: the incumbent moved while it ran (state.py): judged against its own parent.
            target = None if inc is None else inc if e.parent_id == inc.id else by_id[e.parent_id]
            if not done and screening:
                if target is None:
                    continue  # proposed while the baseline trained: screened against it once kept
                action, needs = self.screener.step(e, target, h, busy)
                if action == ScreenStep.DECIDED:
                    return True
                self.queue += [
                    Want(i, remeasure=again, priority=1, seed=seed, screen=sc) for i, again, seed, sc in needs
                ]
                busy |= {i for i, *_ in needs}
                continue
            if not done:
                self.queue.append(Want(e.id, priority=1))
                continue
            if target is None:  # proposed while the baseline trained: judged once the baseline is kept
                continue
            if target.id in busy:
                continue
            step, verdict = self.keeper.judge(e, target, inc, h, stopped)
            if step == Step.MORE:
                given = verdict.incumbent_seeds
                seeds = [*given, *[None] * (verdict.more_incumbent_runs - len(given))]
                more = [Want(target.id, remeasure=True, seed=seed) for seed in seeds]
                more += [Want(e.id) for _ in range(verdict.more_candidate_runs)]
                self.queue += more or [Want(e.id)]
                busy |= {e.id, target.id}
                continue
            if step == Step.WAIT:
                continue
            self.maybe_remeasure()
            return True
        return False

    def maybe_remeasure(self) -> None:
        """Drift: re-run the incumbent from time to time, so a machine that got slower or
        faster shows up in status instead of silently biasing keeps."""
        h = self.night.journal.experiments(self.night.tag)
        inc = self.night.incumbent(h)
        if inc is not None and inc.id not in self.busy() and self.night.judge.remeasure_due(inc, h):
            self.queue.append(Want(inc.id, remeasure=True, drift=True))

    def after_run(self, f: Flight, res: RunResult, stopping: bool) -> None:
        n = self.night
        exp = n.journal.experiment(f.want.exp_id)
        if res.status == RunStatus.INTERRUPTED:
            if not stopping and not n.stop.is_set():  # lost by the executor: run it again
                n.journal.event(
                    n.tag,
                    EventKind.REQUEUED,
                    f"run {f.job.run_id} of #{exp.id} on slot {f.slot.name} was lost ({res.error}); it runs again",
                )
                n.obs.message(f"#{exp.id}: run lost on slot {f.slot.name} ({res.error}); running it again")
                self.queue.insert(0, f.want)
            return
        if res.status in FLAGGED:
            n.journal.event(n.tag, FLAGGED[res.status], f"#{exp.id} run {f.job.run_id}: {res.error}")
        if f.want.remeasure and f.want.screen:  # a partner at the short budget: the screen reads it
            if res.status != RunStatus.OK:
                n.journal.event(n.tag, EventKind.SCREEN_PARTNER_FAILED, f"#{exp.id} run {f.job.run_id}: {res.error}")
        elif f.want.remeasure:
            self._after_incumbent_run(exp, res, f.want.drift)
        elif res.status != RunStatus.OK and not exp.status.final:
            n.finish(exp, FAILED_STATUS[res.status], f"{res.error}\n{res.log_tail[-2000:]}".strip())
            if exp.parent_id is None:
                raise OvernightError(
                    f"the baseline run failed ({res.status.value}: {res.error}) — "
                    f"fix the task first; log: {res.log_path}"
                )

    def _after_incumbent_run(self, inc: Experiment, res: RunResult, drift: bool) -> None:
        """A re-measured incumbent keeps its status; its value becomes the new mean."""
        n = self.night
        if res.status != RunStatus.OK:
            failures = sum(r.status not in (RunStatus.OK, RunStatus.INTERRUPTED, RunStatus.RUNNING) for r in inc.runs)
            n.journal.event(n.tag, EventKind.INCUMBENT_FAILED, f"#{inc.id} failed when re-run: {res.error}")
            if failures >= MAX_INCUMBENT_FAILURES:
                raise OvernightError(
                    f"the incumbent #{inc.id} failed {failures} times when re-run — the task "
                    f"is flaky or the machine changed; see {res.log_path}"
                )
            return
        n.journal.set_value(inc.id, mean(inc.ok_values))
        if drift:
            message = n.judge.drift(n.journal.experiment(inc.id), n.journal.experiments(n.tag))
            if message:
                n.journal.event(n.tag, EventKind.DRIFT, message)
                n.obs.message(f"drift: {message}")
