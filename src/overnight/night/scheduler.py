"""The scheduler: every slot busy, decisions finished first, the next proposal ready early.

One loop on the controller's thread:

    collect   finished runs -> journal; a failed run ends its experiment; a run the executor
              lost (a dead Ray node) is journaled `interrupted` and queued again
    plan      each undecided experiment with nothing queued or in flight is asked what it
              needs (lifecycle.py, the one place its fate is decided): its runs are queued
              (the baseline's seeds all at once, a candidate's screen run or first run, what
              the judge asks for), its re-scores started, or its end applied (plan.py)
    dispatch  free slots take a keep's re-scores first, then queued runs: runs that finish a
              decision, then candidates
    ask       the proposer works on its own thread, so a candidate is journaled and waiting
              before a slot frees (one in reserve beyond the free slots)
    re-score  a "keep" lands only once every run it counts has been re-scored by the task's
              protected code; a re-score holds a slot as a run does, so none runs beside a
              timed run (rescorer.py), the candidate busy and not yet the incumbent meanwhile
              (new candidates' first runs wait)
    deadline  after --hours nothing new starts (run, re-score, proposal); what runs ends and is
              judged; one run's timeout later the rest is stopped (interrupted, run on resume)

The judge stays a pure function of the journaled runs. An experiment is judged only when
none of its runs, nor its yardstick's, is queued or in flight, so every verdict sees settled
numbers and a resumed controller reaches the same verdicts.
"""

from __future__ import annotations

import itertools
import json
import time
from concurrent.futures import FIRST_COMPLETED, wait

from overnight.errors import OvernightError
from overnight.executors.base import Executor, Job, Slot
from overnight.night.plan import Flight, Planner
from overnight.night.requests import Want
from overnight.night.rescorer import Rescorer, may_be_rescored
from overnight.night.state import Night
from overnight.records import EventKind, Experiment, RunRequest, RunResult, RunStatus
from overnight.run import outside

WAIT_SECONDS = 0.1  # longest sleep between looks at the slots (a finished run wakes it at once)
VIEW_SECONDS = 0.5  # how often the live view hears about the slots
REPLAN_SECONDS = 1.0  # re-read the journal at least this often (the --hours deadline)


class Scheduler:
    def __init__(self, night: Night, executor: Executor):
        self.night = night
        self.ex = executor
        self.queue: list[Want] = []
        self.flights: dict[str, Flight] = {}  # slot name -> its run
        self.asker = night.asker
        self.rescorer = Rescorer(night, executor)
        self.planner = Planner(night, self.rescorer, self._busy)
        hours = night.cfg.hours
        # --hours counts from the command's start (the task's setup included). At the deadline
        # nothing new starts; what runs may end within one run's timeout, then it is stopped.
        self.deadline = night.started + hours * 3600 if hours else None
        self.grace = night.task.timeout
        self.stopping = False
        self.history: list[Experiment] = []
        self.next_plan = self.next_view = 0.0
        self.collected: set[int] = set()  # experiments whose runs ended since the last journal check

    def run(self) -> None:
        n = self.night
        slots = {"executor": self.ex.name, "slots": [s.describe() for s in self.ex.slots]}
        n.journal.event(n.tag, EventKind.SLOTS, json.dumps(slots))
        try:
            # A resumed night: runs a keep may still need re-scored, wherever the executor left them.
            history = n.journal.experiments(n.tag)
            inc = n.incumbent(history)
            self.ex.adopt(r for e in history for r in e.runs if r.status == RunStatus.OK and may_be_rescored(e, r, inc))
            while True:
                self._collect()
                freed = self.rescorer.released()  # a re-score's slot is free again
                if self.planner.after_rescores(self.stopping) or freed:
                    self.next_plan = 0.0
                self._check_journal()
                n.drain_inbox()
                if n.stop.is_set() or self._past_deadline(self.grace):
                    if not self.stopping:
                        self.stopping = True
                        if not n.stop.is_set():
                            n.obs.message(
                                f"--hours is up, and {self.grace:g} s (one run's timeout) more: "
                                "stopping what still runs (it runs again on resume)"
                            )
                            n.stop.set()  # a proposal in progress (an agent) stops too
                        self.ex.stop_all()
                        self.rescorer.stop_waiting()
                        self.ex.stop_rescores()
                    if not self.flights and self.rescorer.idle:
                        break
                elif self._take_proposal() or time.monotonic() >= self.next_plan:
                    if self._step():
                        break
                self._view()
                self._wait()
        finally:
            self._shutdown()

    def _check_journal(self) -> None:
        """Stop the night if another process changed this tag's experiments or runs (a
        candidate that found journal.db): what the journal says can no longer be trusted."""
        j = self.night.journal
        if j.tampered() or j.tamper_seen:
            suspects = sorted({f.want.exp_id for f in self.flights.values()} | self.collected)
            message = (
                f"the journal's experiments or runs of {self.night.tag} were changed by another process while "
                f"{', '.join(f'#{i}' for i in suspects) or 'nothing'} ran"
            )
            j.event(self.night.tag, EventKind.JOURNAL_TAMPERED, message)
            raise OvernightError(
                f"{message} — the night stops; inspect them (`overnight show ID`), then resume "
                "with the same command (the changes stay)"
            )
        guard = outside.existing(self.night.root)
        if guard is not None and guard.unrestorable:  # the run that wrote it is already invalid
            message = f"a run wrote {guard.unrestorable[0]} into the Python environment, which runs may import"
            j.event(self.night.tag, EventKind.OUTSIDE_TAMPERED, message)
            raise OvernightError(
                f"{message} — the night stops; remove it (and reinstall what it shadows), then resume with "
                "the same command"
            )
        self.collected.clear()

    def _step(self) -> bool:
        """Plan, dispatch and ask on fresh history; True when the night is over."""
        self.next_plan = time.monotonic() + REPLAN_SECONDS
        while True:
            self.history = self.night.journal.experiments(self.night.tag)
            # Decided experiments' runs will not be re-scored: the executor may free their run
            # directories. The incumbent's may still be, as a yardstick (Rescorer.yardstick_runs).
            inc = self.night.incumbent(self.history)
            self.ex.release(
                r.id for e in self.history if e.status.final for r in e.runs if not may_be_rescored(e, r, inc)
            )
            if not self._past_deadline() and self._over():
                return True
            planned = self.planner.plan(self.history, self._past_deadline())
            self.queue += planned.wants
            if not planned.again:
                break
        if self._past_deadline() and self._over():  # after the judge decided what it could
            return True
        self._dispatch()
        self._ask()
        return False

    def _past_deadline(self, grace: float = 0.0) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline + grace

    def _over(self) -> bool:
        active = [e for e in self.history if not e.status.final]
        if self._past_deadline():
            # Work the judge would need next (more runs, a keep's re-scores) is not started
            # after the deadline: the night ends once what runs has ended and been judged.
            if self.flights or self.rescorer.busy:
                return False  # (the baseline's check holds nothing: stopped, not waited for)
            if active:
                self.night.obs.message(
                    f"--hours is up: {len(active)} experiment(s) left undecided "
                    f"({', '.join(f'#{e.id}' for e in active)}); the same command resumes them"
                )
            self.night.stop.set()  # a proposal in progress (an agent) is not waited for
            return True
        return (
            bool(self.history)
            and not active
            and not self.flights
            and not self.queue
            and self.rescorer.idle
            and self.asker.idle
            and self.night.done(self.history, self.deadline)
        )

    def _busy(self) -> set[int]:
        return {w.exp_id for w in self.queue} | {f.want.exp_id for f in self.flights.values()} | self.rescorer.busy

    # --- dispatch: free slots take queued runs ------------------------------------------------
    def _dispatch(self) -> None:
        held = self.rescorer.held()
        free = [s for s in self.ex.slots if s.name not in self.flights and s.name not in held]
        # A keep's re-scores first (one asked for before --hours still starts after it: its keep
        # is waited for); the baseline's check too, before --hours: it is what tells a broken
        # re-score command early, and with one slot a gap would never come.
        self.rescorer.dispatch(free, checks=not self._past_deadline())
        if self._past_deadline():
            return  # nothing new starts after --hours (what is queued runs on resume)
        self.queue.sort(key=lambda w: (w.priority, w.exp_id))  # stable: FIFO within a level
        inc = self.night.incumbent(self.history)
        # A keep being re-scored is about to replace the incumbent: new candidates' first runs
        # wait for it (rescorer.py says why); runs that finish decisions go on. Before the
        # baseline is kept (its runs or its re-score still going) a candidate that has run
        # waits to be judged, and may be kept: the next one waits too, else it starts on the
        # baseline and is stale at once (seen: one night in five with one slot, greedy judge).
        hold = self.rescorer.moves(inc.id) if inc is not None else self.planner.candidate_awaits_judgement(self.history)
        later: list[Want] = []
        while free and self.queue and not (hold and self.queue[0].priority >= 1):
            want = self.queue.pop(0)
            exp = self.night.journal.experiment(want.exp_id)
            if self.planner.cost_pending(exp, self.flights):
                later.append(want)  # its first run is measuring what every later one is given
                continue
            if not want.remeasure and not exp.status.final and self.asker.thinking:
                if self.night.needs_rebase(exp, self.history):
                    # The rebase is the proposer's call, on its thread (asker.py): once the
                    # proposal it is making now is done. Other queued runs go first.
                    later.append(want)
                    continue
            exp = self.planner.begin(want, self.history)  # its commit, or its end (the lifecycle's)
            if exp is None:  # ended (rejected, a duplicate) or decided: no run of it starts (a re-measure may)
                self.queue[:] = [w for w in self.queue if w.exp_id != want.exp_id or w.remeasure]
                self.next_plan = 0.0
                continue
            self._start(want, exp, free.pop(0))
        self.queue[:0] = later

    def _start(self, want: Want, exp: Experiment, slot: Slot) -> None:
        n = self.night
        # The seed is that of the lowest replicate no finished or running run of it holds
        # (seeding.py): concurrent replicates get distinct seeds, a re-run of an interrupted one
        # its own seed; a partner for a pair runs under the candidate's seed (Want.seed).
        used = {r.seed for r in n.journal.experiment(exp.id).runs if r.status != RunStatus.INTERRUPTED}
        seed = want.seed
        if seed is None:
            seed = next(n.seed(i) for i in itertools.count() if n.seed(i) not in used)
        # A screen run gets its shorter budget through OVERNIGHT_BUDGET (screen.py); every run's
        # budget is journaled with it.
        budget = self.planner.screen_budget if want.screen else n.task.budget
        cost, cost_ref = n.costs(exp)  # the steps clock: the commit's seconds per token, once measured
        run_id = n.journal.start_run(exp.id, seed, slot=slot.name, node=slot.node, budget=budget, screen=want.screen)
        job = Job(
            run_id,
            RunRequest(
                commit=exp.commit_sha,
                seed=seed,
                run_dir=n.paths.run_dir(exp.id, run_id),
                worktree=n.paths.run_worktree(exp.id, run_id),
                protected_hashes=n.protected_hashes,
                budget=budget if want.screen else None,
                cost=cost,
                cost_ref=cost_ref,
            ),
        )
        self.flights[slot.name] = Flight(want, exp, job, slot, self.ex.start(job, slot), time.time())
        n.obs.experiment_started(exp, len(used))

    # --- collect: finished runs ---------------------------------------------------------------------
    def _collect(self, settle_only: bool = False) -> None:
        for name, f in list(self.flights.items()):
            if not f.future.done():
                continue
            del self.flights[name]
            self.collected.add(f.want.exp_id)
            self.next_plan = 0.0
            res: RunResult = f.future.result()
            self.night.journal.finish_run(f.job.run_id, res)
            node = self.ex.node_of(f.job)
            if node and node != f.slot.node:
                self.night.journal.set_run_node(f.job.run_id, node)
            if not settle_only:
                again = self.planner.after_run(f, res, self.stopping)
                if again is not None:  # a lost run: queued again, at the front when it asks to be
                    at = 0 if again.first else len(self.queue)
                    self.queue[at:at] = again.wants

    # --- ask: the next proposal, prepared while the slots train ------------------------------------
    def _take_proposal(self) -> bool:
        if self.asker.failed() and self.night.incumbent(self.history) is None:
            return False  # asked while the baseline trained: the baseline's own outcome is told first
        got = self.asker.answer()
        if got is None:
            return False
        proposal, ctx = got
        if not self.night.stop.is_set():  # after Ctrl-C nothing new is journaled
            self.night.add_proposal(ctx, proposal)
        return True

    def _ask(self) -> None:
        n, h = self.night, self.history
        if not self.asker.idle or not h or n.done(h, self.deadline):
            return
        inc = n.incumbent(h)
        if inc is None:  # the baseline still trains: a knob search can propose on its files already
            if h[0].status.final or n.proposer.needs_baseline_result:
                return
        elif self.rescorer.moves(inc.id):  # a keep is landing: propose on it, not on the old one
            return
        waiting = sum(
            1
            for e in h
            if e.parent_id is not None
            and not e.status.final
            and not any(r.status != RunStatus.INTERRUPTED for r in e.runs)
        )
        free = len(self.ex.slots) - len(self.flights) - len(self.rescorer.held())  # a re-score's slot is not free
        if waiting <= free:  # one in reserve beyond the free slots
            self.asker.ask(n.context(h))

    # --- the view, waiting, the end ------------------------------------------------------------------
    def _view(self) -> None:
        now = time.time()
        if now < self.next_view:
            return
        self.next_view = now + VIEW_SECONDS
        rows = []
        for s in self.ex.slots:
            f = self.flights.get(s.name)
            held = self.rescorer.held_by(s.name)
            rows.append(
                {
                    **s.describe(),
                    "experiment": f.exp.id if f else None,
                    "description": f.exp.description if f else None,
                    "elapsed": now - f.started if f else None,
                }
            )
            if held is not None and not held.future.done():  # the slot re-scores a run
                rows[-1].update(experiment=held.exp_id, description=f"re-score of run {held.run_id}")
                rows[-1].update(elapsed=now - held.started)
            if f:
                self.night.obs.progress(f.exp, now - f.started)
        self.night.obs.slots(rows)

    def _wait(self) -> None:
        futures = [f.future for f in self.flights.values()] + self.rescorer.futures() + self.asker.futures()
        if futures:
            wait(futures, timeout=WAIT_SECONDS, return_when=FIRST_COMPLETED)
        else:
            time.sleep(WAIT_SECONDS / 10)

    def _shutdown(self) -> None:
        """Stop what still runs, journal it as interrupted (it runs again on resume)."""
        self.stopping = True
        try:
            if self.flights:
                self.ex.stop_all()
                wait([f.future for f in self.flights.values()])
                self._collect(settle_only=True)
            self.night.journal.recover(self.night.tag)
        finally:
            self.rescorer.close()  # unfinished re-scores journal nothing: re-done on resume
            self.asker.close()
