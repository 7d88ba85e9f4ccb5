"""An experiment's lifecycle: where every candidate's fate is decided, and the one caller of
`Night.finish`.

    begin      before its first run: its commit on the current incumbent, or its end
               (`begin`: rejected, a duplicate; state.materialise)
    screen     with screening on (the default with the noise judge): a short run paired with
               the incumbent's; out (finished `screened`), promoted or audited (screen.py)
    run        its first full-budget run
    judge      the judge's verdict on its runs against its yardstick (the incumbent, or its own
               parent when it went stale): more runs of it and of the yardstick, or a decision
    re-score   a keep waits until every counted run is re-scored by protected code (`Rescore`,
               run by rescorer.py; a disagreement ends it, `rescore_failed`), then is judged again
    held-out   under [heldout], a keep the held-out slice does not share is a discard (keep.py)
    finish     kept (the branch moves), discarded (a stale winner's change carried over as a new
               experiment), screened, rejected, a duplicate, or failed (`finish`)

`next(e, view)` is that path, as a function of the experiment, the journal and what is in flight
(`View`): it returns what `e` needs (requests.py: `Runs`, `Rescore`, `Wait` or `Finish`) and
changes no experiment itself; it journals its reasoning (screen decisions, held-out figures) as
events. The planner (plan.py) queues the runs and starts the re-scores it asks for and hands a
`Finish` back to `finish`. What a run's end means (`run_ended`) is decided here too: a failed run
ends its experiment; a lost one runs again. A resumed night reads the same journal and reaches
the same requests.
"""

from __future__ import annotations

from overnight.errors import OvernightError
from overnight.judges.stats import mean
from overnight.night.keep import heldout_check
from overnight.night.requests import Finish, Request, Rescore, Runs, View, Wait, Want
from overnight.night.rescorer import needed, yardstick_runs
from overnight.night.screen import Screener
from overnight.night.state import Night
from overnight.records import FAILED_STATUS, EventKind, Experiment, ExpStatus, RunResult, RunStatus, VerdictAction

MAX_INCUMBENT_FAILURES = 3
FLAGGED = {
    RunStatus.OVER_BUDGET: EventKind.OVER_BUDGET,
    RunStatus.OOM: EventKind.OOM,
    RunStatus.MISMATCH: EventKind.RESCORE_MISMATCH,
    RunStatus.READS_HELDOUT: EventKind.READS_HELDOUT,
}


class Lifecycle:
    def __init__(self, night: Night):
        self.night = night
        self.screener = Screener(night)

    def look(self, history: list[Experiment], **now) -> View:
        """The view `next` decides on: `history` and what is in flight now (View's fields), with
        the screen's rank check done first (it may turn screening off for good)."""
        screening = self.screener.on
        if screening:
            self.screener.check(history)
            screening = self.screener.on
        return View(history, screening=screening, **now)

    # --- the path ------------------------------------------------------------------------------
    def next(self, e: Experiment, v: View) -> Request:
        """What undecided experiment `e`, none of whose runs is queued or in flight, needs next."""
        n = self.night
        done = [r for r in e.runs if r.status != RunStatus.INTERRUPTED]
        ended = [*done, *(r for r in e.screens if r.status != RunStatus.INTERRUPTED)]
        failed = [r for r in ended if r.status not in (RunStatus.OK, RunStatus.RUNNING)]
        if failed:  # journaled by a controller killed before it could decide
            return Finish(FAILED_STATUS[failed[0].status], failed[0].error or "failed")
        if e.parent_id is None:  # the baseline: several seeds at once, the first noise estimate
            need = n.judge.baseline_runs() - len(done)
            if need > 0:
                return Runs(tuple(Want(e.id) for _ in range(need)))
            # Kept without re-scores: the reference (rescorer.yardstick_runs says why).
            return Finish(ExpStatus.KEPT, "baseline", mean(e.ok_values))
        inc = n.incumbent(v.history)
        # Stale: the incumbent moved while it ran (state.py): judged against its own parent.
        by_id = {x.id: x for x in v.history}
        target = None if inc is None else inc if e.parent_id == inc.id else by_id[e.parent_id]
        if not done and not v.screening:
            return Runs((Want(e.id, priority=1),))
        if target is None:  # proposed while the baseline trained
            return Wait("the baseline is not kept yet: screened and judged against it once it is")
        if not done:
            return self.screener.step(e, target, v.history, v.busy)
        if target.id in v.busy:
            return Wait(f"runs of its yardstick #{target.id} are queued or in flight")
        return self._judged(e, target, inc, v)

    def _judged(self, e: Experiment, target: Experiment, inc: Experiment, v: View) -> Request:
        n = self.night
        verdict = n.judge.judge(e, target, n.task.metric, v.history)
        if verdict.action == VerdictAction.MORE:
            given = verdict.incumbent_seeds
            seeds = [*given, *[None] * (verdict.more_incumbent_runs - len(given))]
            more = [Want(target.id, remeasure=True, seed=seed) for seed in seeds]
            more += [Want(e.id) for _ in range(verdict.more_candidate_runs)]
            return Runs(tuple(more or [Want(e.id)]), yardstick=target.id)
        # A stale winner is re-scored too: its change would be measured again as a new
        # experiment, and a cheat is better caught (and flagged) before that.
        if verdict.action == VerdictAction.KEEP:
            wait = self._rescores(e, target, v)
            if wait is not None:
                return wait
        verdict = heldout_check(n, e, target, verdict)
        keep = verdict.action == VerdictAction.KEEP
        if e.parent_id == inc.id:
            status = ExpStatus.KEPT if keep else ExpStatus.DISCARDED
            return Finish(status, verdict.reason, verdict.value, verdict.flags, judged=True)
        why = f"stale: #{inc.id} was kept while it ran; against its parent #{target.id}: {verdict.reason}"
        return Finish(ExpStatus.DISCARDED, why, verdict.value, verdict.flags, carry_over=keep, judged=True)

    def _rescores(self, e: Experiment, target: Experiment, v: View) -> Rescore | Wait | None:
        """The re-scores a keep of `e` over `target` still needs (its own runs', and the held-out
        scores of the yardstick's runs it is paired with), or None when all are in."""
        task = self.night.task
        yard = yardstick_runs(task, e, target, v.unavailable)
        if {r.id for r in yard} & v.rescoring:
            return Wait("another keep's re-score of its yardstick's runs is running")  # never two at once
        runs = needed(task, e) + yard
        if not runs:
            return None
        if v.stopped:
            return Wait("past --hours: its re-scores start when the night resumes")
        return Rescore(e, tuple(runs), target)

    # --- the other turns of its life ---------------------------------------------------------------
    def begin(self, exp: Experiment, history: list[Experiment]) -> Experiment | None:
        """Before a run of candidate `exp`: its commit (state.materialise), or None when it ended
        there (rejected, a duplicate)."""
        made = self.night.materialise(exp, history)
        if isinstance(made, Finish):
            self.finish(exp, made)
            return None
        return made

    def run_ended(self, want: Want, run_id: int, slot: str, res: RunResult, stopping: bool) -> Runs | None:
        """What a run's end means: a failed one ends its experiment; one the executor lost (a
        dead Ray node) runs again (the Runs to queue first); a re-run of the incumbent updates its
        value."""
        n = self.night
        exp = n.journal.experiment(want.exp_id)
        if res.status == RunStatus.INTERRUPTED:
            if stopping or n.stop.is_set():
                return None  # journaled interrupted: it runs on resume
            lost = f"run {run_id} of #{exp.id} on slot {slot} was lost ({res.error})"
            n.journal.event(n.tag, EventKind.REQUEUED, f"{lost}; it runs again")
            n.obs.message(f"#{exp.id}: run lost on slot {slot} ({res.error}); running it again")
            return Runs((want,), first=True)
        if res.status in FLAGGED:
            n.journal.event(n.tag, FLAGGED[res.status], f"#{exp.id} run {run_id}: {res.error}")
        if want.remeasure and want.screen:  # a partner at the short budget: the screen reads it
            if res.status != RunStatus.OK:
                n.journal.event(n.tag, EventKind.SCREEN_PARTNER_FAILED, f"#{exp.id} run {run_id}: {res.error}")
        elif want.remeasure:
            self._remeasured(exp, res, want.drift)
        elif res.status != RunStatus.OK and not exp.status.final:
            self.finish(exp, Finish(FAILED_STATUS[res.status], f"{res.error}\n{res.log_tail[-2000:]}".strip()))
            if exp.parent_id is None:
                raise OvernightError(
                    f"the baseline run failed ({res.status.value}: {res.error}) — "
                    f"fix the task first; log: {res.log_path}"
                )
        return None

    def _remeasured(self, inc: Experiment, res: RunResult, drift: bool) -> None:
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

    def rescore_failed(self, exp: Experiment, bad: RunResult) -> None:
        """A re-score of `exp`'s runs disagreed or failed (keep.collect_rescores journaled it)."""
        n, fin = self.night, Finish(FAILED_STATUS[RunStatus.MISMATCH], bad.error)
        if exp.parent_id is None:  # the kept baseline's early check
            if not any(e.status == ExpStatus.KEPT for e in n.journal.experiments(n.tag) if e.parent_id):
                self.finish(exp, fin)  # a resumed night says: start a new tag
            raise OvernightError(
                f"the baseline's re-score failed ({bad.error}) — fix the task's "
                f"rescore command first; log: {bad.log_path}"
            )
        if not exp.status.final:
            self.finish(exp, fin)

    # --- the end -----------------------------------------------------------------------------------
    def finish(self, e: Experiment, fin: Finish, stopped: bool = False) -> Rescore | None:
        """Apply `fin` to `e` (the only call of Night.finish). Returns the kept baseline's
        re-score check, when one is due: one run re-scored in a slot, before the first candidate's
        run, holding no decision, so a task whose re-score command is broken stops the night now,
        in one line, not after a night of winners discarded as `rescore-mismatch` (with
        [heldout] that run, seed 0 like every candidate's first, also has its held-out score
        ready for the first keep)."""
        n = self.night
        for flag in fin.flags:
            n.journal.event(n.tag, flag, f"#{e.id}: {fin.reason}")
        reason = fin.reason
        if fin.carry_over:
            history = n.journal.experiments(n.tag)
            new, inc = n.rebase_stale(e, history), n.incumbent(history)
            reason += (
                f"; its change goes on as #{new.id}, rebased onto #{inc.id}"
                if new
                else f"; its change is already in (or cannot be merged onto) #{inc.id}: not carried over"
            )
        n.finish(e, fin.status, reason, fin.value)
        if e.parent_id is None and fin.status == ExpStatus.KEPT:
            base = n.journal.experiment(e.id)
            runs = needed(n.task, base)[:1]
            if runs and not stopped:
                return Rescore(base, tuple(runs), check=True)
        return None
