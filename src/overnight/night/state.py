"""The night's state and its transitions: what the scheduler may do to the experiments.

`Night` is the narrow, typed view the scheduler, the rescorer and the lifecycle get (never
the controller, which sets a night up and tears it down): the journal and the tag, the task,
the judge, the proposer's thread (`asker`: every proposer call goes through it), and the
transitions of an experiment: journaled (`add_baseline`, `add_proposal`), committed
(`materialise`, `rebase_stale`) and decided (`finish`, which moves the branch on a keep; only
the lifecycle calls it, lifecycle.py, which decides every experiment's fate).
Every state change is a journal write first and an action second. The controller's thread is
the only writer of the journal: a proposer's news (`ctx.say`) comes back through a queue.

Parallel candidates and the incumbent (the stale rule). A candidate is proposed on the
incumbent of its time, and the incumbent may move before it is decided:

- moved before it STARTS: its change is rebased onto the new incumbent first, so it is
  measured on top of every kept change;
- moved while it RUNS: it is stale. It is judged against its own parent (the comparison it
  was measured for); if it wins there, its change is rebased onto the current incumbent as a
  NEW experiment, measured and judged like any other, and the stale one is recorded as
  discarded with the reason (`overnight show`).

Rebasing is the proposer's own (`Proposer.rebase`: a knob proposer sets the same values on
the new incumbent) or a three-way merge in which the candidate's lines win where both sides
changed the same line: the merged result is always measured before it can be kept, so
overriding a kept value is a measured decision, not a silent one. A rebase that changes
nothing (the idea is already in) or that git cannot do is not run: rejected (not started) or
discarded (stale). Only a candidate whose parent is the incumbent is ever kept, so the
branch stays one line and no kept change is dropped.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from overnight import gitops
from overnight.errors import GitError, OvernightError
from overnight.journal import Journal
from overnight.judges import Judge
from overnight.layout import TagPaths
from overnight.night import seeding
from overnight.night.asker import Asker
from overnight.night.config import Observer, RunConfig
from overnight.night.duplicates import find_original
from overnight.night.duplicates import reason as duplicate_reason
from overnight.night.guards import seed_only_change
from overnight.night.requests import Finish
from overnight.proposers import Context, Proposal, Proposer
from overnight.proposers.base import REJECTED_KEY
from overnight.records import EventKind, Experiment, ExpStatus, RunStatus, incumbent
from overnight.run.execute import prune_run_dir
from overnight.task import TaskSpec
from overnight.textsafe import printable

REBASED_KEY = "rebased_from"  # params of an experiment made by the stale rule


@dataclass
class Night:
    root: Path
    task: TaskSpec
    cfg: RunConfig
    tag: str
    journal: Journal
    judge: Judge
    proposer: Proposer
    asker: Asker
    obs: Observer
    stop: threading.Event
    paths: TagPaths
    base_commit: str
    baseline_files: dict[str, str]
    protected_hashes: dict[str, str]
    started: float  # time.monotonic() when the command started: --hours counts from here
    inbox: queue.Queue = field(default_factory=queue.Queue)  # (kind, message) said on other threads
    seed_secret: str | None = None  # the night's seeds derive from it (seeding.py); None: an old night's
    thread: threading.Thread = field(default_factory=threading.current_thread)  # the journal's writer
    trees: dict[str, str] = field(default_factory=dict)  # commit -> tree, for duplicates.py

    def costs(self, exp: Experiment) -> tuple[float | None, float | None]:
        """(cost, reference) for a run of `exp` under the steps clock (RunRequest.cost): its
        journaled seconds per token and the reference its first run was given; before that,
        none and its parent's cost (the baseline has none: its first run's measure is the
        night's yardstick). (None, None) under the other clocks."""
        if self.task.clock != "steps":
            return None, None
        if exp.cost is not None:
            return exp.cost, exp.cost_ref
        if exp.parent_id is None:
            return None, None
        return None, self.journal.experiment(exp.parent_id).cost

    @property
    def state(self) -> Path:
        return self.paths.state

    def move_branch(self, new: str) -> None:
        """Point overnight/<tag> at `new` only from a commit the journal put there (the base or a
        kept experiment's: each an ancestor of `new`, so nothing is lost). A commit someone else
        made on the branch stops the night instead of being dropped by `git update-ref`."""
        ref = f"refs/heads/overnight/{self.tag}"
        ours = {self.base_commit} | {
            e.commit_sha for e in self.journal.experiments(self.tag) if e.status == ExpStatus.KEPT
        }
        at = gitops.rev_parse(self.root, ref)
        if at is None or at in ours:  # deleted by the user: made again, nothing to lose
            try:
                gitops.update_ref(self.root, ref, new, old=at or "")  # compare-and-swap
                return
            except GitError:  # it moved between the read and the write
                at = gitops.rev_parse(self.root, ref) or "?"
        raise OvernightError(
            f"branch overnight/{self.tag} is at {at[:12]}, a commit overnight did not make, and "
            f"moving it to the best so far ({new[:12]}) would drop it — keep your commit elsewhere "
            f"(git branch my-work {at[:12]}), reset the branch (git update-ref {ref} {new}) and "
            "run the same command again"
        )

    @property
    def results_path(self) -> Path:
        path = self.paths.results_tsv
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def done(self, history: list[Experiment], deadline: float | None) -> bool:
        # A stale candidate's rebase (loop docstring) is that candidate measured again, not a
        # new idea: it does not count against --experiments.
        proposed = sum(REBASED_KEY not in e.params for e in history)
        if self.cfg.experiments is not None and proposed >= self.cfg.experiments:
            return True
        # Neither limit given: run until stopped (Ctrl-C), which is what "all night" means.
        return deadline is not None and time.monotonic() >= deadline

    def incumbent(self, history: list[Experiment]) -> Experiment | None:
        return incumbent(history)

    def context(self, history: list[Experiment]) -> Context:
        # Before the baseline is kept, its files are what a proposal builds on (see Scheduler._ask).
        inc = self.incumbent(history) or history[0]
        files = gitops.read_files(self.root, inc.commit_sha, self.task.editable)
        notes = [n["message"] for n in self.journal.notes(self.tag)]
        return Context(
            self.task,
            self.tag,
            self.state,
            self.baseline_files,
            inc,
            files,
            history,
            self.cfg.seed,
            notes=notes,
            say=self.say,
            stop=self.stop,
        )

    def seed(self, replicate: int) -> int:
        """The seed of the night's `replicate`-th run of an experiment (0: its first)."""
        return seeding.seed(self.seed_secret, replicate, self.cfg.seed)

    def say(self, kind: str, message: str) -> None:
        """A proposer's news (e.g. falling back to optuna): journaled, and shown live."""
        if threading.current_thread() is not self.thread:
            self.inbox.put((kind, message))  # the journal has one writer: this controller's thread
            return
        self.journal.event(self.tag, kind, message)
        self.obs.message(message)

    def drain_inbox(self) -> None:
        while True:
            try:
                kind, message = self.inbox.get_nowait()
            except queue.Empty:
                return
            self.say(kind, message)

    # --- experiments ----------------------------------------------------------------------------
    def add_baseline(self) -> Experiment:
        """The first experiment of every night is the unmodified baseline."""
        exp_id = self.journal.add_experiment(self.tag, None, self.base_commit, "baseline", "baseline", {}, {})
        self.journal.set_commit(exp_id, self.base_commit, "")
        return self.journal.experiment(exp_id)

    def add_proposal(self, ctx: Context, proposal: Proposal) -> Experiment:
        exp_id = self.journal.add_experiment(
            self.tag,
            ctx.incumbent.id,
            ctx.incumbent.commit_sha,
            proposal.description,
            proposal.proposer or self.proposer.name,
            proposal.params,
            proposal.edits,
        )
        return self.journal.experiment(exp_id)

    def rebased_edits(self, exp: Experiment, history: list[Experiment]) -> dict[str, str] | None:
        """`exp`'s change carried onto the current incumbent: the proposer's own way if it has
        one, else a three-way merge; None when git cannot merge or nothing would change."""
        ctx = self.context(history)
        proposal = self.asker.call(self.proposer.rebase, exp, ctx)
        edits = (
            proposal.edits
            if proposal is not None
            else gitops.merge_edits(self.root, exp.base_commit, ctx.incumbent.commit_sha, exp.edits)
        )
        if edits is None:
            return None
        edits = {p: t for p, t in edits.items() if ctx.incumbent_files.get(p) != t}
        return edits or None

    def needs_rebase(self, exp: Experiment, history: list[Experiment]) -> bool:
        """Whether `exp`, not measured yet, was proposed on an incumbent that has moved since."""
        inc = self.incumbent(history)
        measured = any(r.status != RunStatus.INTERRUPTED for r in exp.runs)
        return exp.parent_id is not None and inc is not None and exp.parent_id != inc.id and not measured

    def materialise(self, exp: Experiment, history: list[Experiment]) -> Experiment | Finish:
        """Make the candidate's commit (idempotent) on top of the current incumbent. Or its end,
        for the lifecycle to apply: rejected, for edits outside the editable files, a rebase that
        is empty; a duplicate, for files already measured (answered from the journal)."""
        if exp.params.get(REJECTED_KEY) and exp.commit_sha is None:  # a failed proposal: never run
            return Finish(ExpStatus.REJECTED, exp.params[REJECTED_KEY])
        outside = sorted(set(exp.edits) - set(self.task.editable))
        if outside and exp.commit_sha is None:
            return Finish(ExpStatus.REJECTED, f"edits non-editable file(s): {', '.join(outside)}")
        seed_only = exp.commit_sha is None and seed_only_change(
            gitops.read_files(self.root, exp.base_commit, list(exp.edits)), exp.edits
        )
        if seed_only:
            return Finish(ExpStatus.REJECTED, seed_only)
        if self.needs_rebase(exp, history):
            inc = self.incumbent(history)
            edits = self.rebased_edits(exp, history)
            if edits is None:
                return Finish(
                    ExpStatus.REJECTED,
                    f"stale: proposed on #{exp.parent_id}; its change is already "
                    f"in (or cannot be merged onto) #{inc.id}, kept since",
                )
            desc = re.sub(r" \(rebased onto #\d+\)$", "", exp.description) + f" (rebased onto #{inc.id})"
            self.journal.rebase_experiment(exp.id, inc.id, inc.commit_sha, edits, desc)
            exp = self.journal.experiment(exp.id)
        if exp.commit_sha is None:
            sha = gitops.make_commit(
                self.root, exp.base_commit, exp.edits, f"overnight {self.tag} #{exp.id}: {printable(exp.description)}"
            )
            self.journal.set_commit(exp.id, sha, gitops.diff(self.root, exp.base_commit, sha))
        exp = self.journal.experiment(exp.id)
        gitops.update_ref(self.root, f"refs/overnight/{self.tag}/{exp.id}", exp.commit_sha)
        # Checked before its first run only: once it runs, it is the measurement.
        original = None if exp.runs else find_original(self.root, exp, history, self.trees)
        if original is not None:
            self.journal.event(self.tag, EventKind.DUPLICATE, f"#{exp.id} has the files of #{original.id}: not run")
            return Finish(ExpStatus.DUPLICATE, duplicate_reason(original), original.value)
        return exp

    def rebase_stale(self, exp: Experiment, history: list[Experiment]) -> Experiment | None:
        """The stale rule's second half: a NEW experiment with `exp`'s edits on the current
        incumbent (found again, not duplicated, when a killed controller decides twice)."""
        for e in history:
            if e.params.get(REBASED_KEY) == exp.id:
                return e
        edits = self.rebased_edits(exp, history)
        if edits is None:
            return None
        inc = self.incumbent(history)
        # Keys starting with "_" are the proposer's bookkeeping for the original (an Optuna
        # trial number): the rebased experiment is a different configuration.
        params = {k: v for k, v in exp.params.items() if not k.startswith("_")} | {REBASED_KEY: exp.id}
        exp_id = self.journal.add_experiment(
            self.tag,
            inc.id,
            inc.commit_sha,
            f"{exp.description} (#{exp.id} rebased onto #{inc.id})",
            exp.proposer,
            params,
            edits,
        )
        return self.journal.experiment(exp_id)

    def finish(self, exp: Experiment, status: ExpStatus, reason: str, value: float | None = None) -> None:
        """Record `exp`'s fate (called by the lifecycle alone, lifecycle.py): the journal first,
        then the branch on a keep (a crash between the two is repaired on resume), its
        checkpoints pruned unless kept, the proposer told, results.tsv and the view updated."""
        self.journal.set_status(exp.id, status, reason, value)
        if status == ExpStatus.KEPT:
            self.move_branch(exp.commit_sha)
        exp = self.journal.experiment(exp.id)
        if status != ExpStatus.KEPT:  # its checkpoints go (limits: disk); its logs and results stay
            for run in (*exp.runs, *exp.screens):
                prune_run_dir(self.paths.run_dir(exp.id, run.id))
        history = self.journal.experiments(self.tag)
        if self.incumbent(history) is not None:
            self.asker.tell(exp, self.context(history))
        self.journal.write_results_tsv(self.tag, self.results_path)
        self.obs.experiment_finished(exp)
