"""The controller: propose, commit, run, judge, keep or discard, all night.

Every state change is a journal write first and an action second, so a controller killed at
any instant restarts with the same command and carries on: runs found `running` are marked
interrupted and their experiments run again; a proposal journaled but not yet committed is
committed from its stored edits; the branch is re-pointed at the last kept commit.

This module holds the night's state and its transitions (start, propose, commit, finish);
`scheduler.py` decides what runs when, across the executor's slots. The controller's thread
is the only writer of the journal: proposers run on a thread of their own and pass their
news (`ctx.say`) back through a queue.

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

import difflib
import fcntl
import os
import queue
import re
import sqlite3
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

from overnight import gitops
from overnight.errors import GitError, OvernightError
from overnight.journal import Experiment, ExpStatus, Journal
from overnight.judges import Judge, make_judge
from overnight.judges.noise import NoiseSettings
from overnight.night import setup as task_setup
from overnight.night.guards import seed_only_change
from overnight.proposers import Context, Proposal, Proposer, ProposerOptions, make_proposer
from overnight.proposers.base import REJECTED_KEY
from overnight.report.status import incumbent
from overnight.run import credentials, heldout_store, sandbox, watch
from overnight.run.runner import kill_tag_survivors, protected_hashes, prune_run_dir
from overnight.task import TaskSpec, load_task

STATE_DIR = ".overnight"
REBASED_KEY = "rebased_from"  # params of an experiment made by the stale rule


@dataclass(frozen=True)
class RunConfig:
    tag: str | None = None  # None: resume the latest tag, or start one named after today
    proposer: str = "optuna"
    proposer_options: ProposerOptions = field(default_factory=ProposerOptions)  # llm, agent, hybrid
    judge: str = "noise"
    noise: NoiseSettings = field(default_factory=NoiseSettings)  # settings of the noise judge
    experiments: int | None = None  # total for the tag, baseline included
    hours: float | None = None  # wall-clock limit of this invocation
    budget: float | None = None  # overrides task.budget
    seed: int = 0  # search seed; run seeds are replicate indices offset by it
    executor: str = "local"  # local | ray
    slots: int | None = None  # runs at once; None: one per GPU (local), the cluster's size (ray), else 1
    gpus: tuple[str, ...] | None = None  # local: pin slots to these device ids; None: detect
    ray_address: str | None = None  # ray: the cluster to join; None: start a local one


class Observer:
    """What the controller tells the outside (the CLI's live view). No-op by default.
    Called from the controller's thread only."""

    def experiment_started(self, exp: Experiment, run_index: int) -> None: ...
    def progress(self, exp: Experiment, elapsed: float) -> None: ...
    def experiment_finished(self, exp: Experiment) -> None: ...
    def message(self, text: str) -> None: ...
    def slots(self, rows: list[dict]) -> None:
        """Every slot: {slot, node, gpu, experiment, description, elapsed} (None when idle)."""


def _names(source: str) -> list[str]:
    from overnight.knobs import find_constants

    try:
        return list(find_constants(source))
    except (SyntaxError, ValueError):
        return []


def state_dir(root: Path) -> Path:
    return Path(root) / STATE_DIR


def _state_folder(root: Path) -> Path:
    """.overnight/ of `root`, refused in one line when a file holds that name."""
    state = state_dir(root)
    if state.exists() and not state.is_dir():
        raise OvernightError(
            f"{state} is a file, but overnight keeps its journal in a folder of that name — move the file away"
        )
    return state


def open_journal(root: Path) -> Journal:
    state = _state_folder(root)
    try:
        return Journal(state / "journal.db")
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError):  # locked, disk full: not the file's fault
            raise
        raise OvernightError(
            f"the journal {state / 'journal.db'} is damaged ({exc}) — move it aside and "
            "start a new night, or restore it from a backup"
        ) from None


def check_tag(tag: str) -> str:
    """A tag names the branch overnight/<tag>: letters, digits, '-', '_', '.', and a valid git ref."""
    if not tag or not all(c.isalnum() or c in "-_." for c in tag):
        raise OvernightError(f"tag {tag!r} may only hold letters, digits, '-', '_' and '.' — pick another --tag")
    ok = subprocess.run(["git", "check-ref-format", f"refs/heads/overnight/{tag}"], capture_output=True).returncode == 0
    if not ok or tag.startswith((".", "-")):
        raise OvernightError(
            f"tag {tag!r} is not a valid git branch name (overnight/{tag}) — pick another "
            "--tag, e.g. one without '..', a leading '.' or a '.lock' ending"
        )
    return tag


def resolve_tag(journal: Journal, tag: str | None) -> str:
    if tag:
        return check_tag(tag)
    existing = journal.tags()
    return existing[-1] if existing else date.today().strftime("%b%d").lower()


class TagLock:
    """One controller per tag: an exclusive flock on .overnight/<tag>/controller.lock, which
    holds the owner's pid. The kernel drops the lock when its process ends, however it ends
    (kill -9 included), so a stale lock file never blocks a resume. Read-only commands
    (status, report, show) never take it."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self, tag: str) -> None:
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise OvernightError(
                f"tag {tag} is already being run by another controller (pid {owner}) — "
                f"watch it with `overnight status --tag {tag}`, or stop it (Ctrl-C there, "
                f"or kill {owner}) and run this again to resume"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor drops the flock


class Controller:
    def __init__(
        self,
        root: Path,
        cfg: RunConfig,
        observer: Observer | None = None,
        stop: threading.Event | None = None,
        proposer: Proposer | None = None,
        executor=None,
    ):
        self.root = gitops.toplevel(Path(root).resolve())
        self.cfg = cfg
        self.obs = observer or Observer()
        self.stop = stop or threading.Event()
        self.started = time.monotonic()  # --hours counts from here (scheduler.py)
        self.task: TaskSpec = load_task(self.root).with_budget(cfg.budget)
        if cfg.tag is not None:
            check_tag(cfg.tag)
        self._check_files()
        self.state = _state_folder(self.root)
        self.state.mkdir(exist_ok=True)
        gitops.ignore_locally(self.root, f"/{STATE_DIR}/")
        self.journal = open_journal(self.root)
        self.tag = resolve_tag(self.journal, cfg.tag)
        self.judge: Judge = make_judge(cfg.judge, cfg.noise)
        self.proposer: Proposer = proposer or make_proposer(cfg.proposer, cfg.proposer_options)
        self.executor = executor  # None: built from cfg when the night starts (Ray connects then)
        self.inbox: queue.Queue = queue.Queue()  # (kind, message) said on the proposer's thread
        self.tell_via = None  # the scheduler routes `observe` through the proposer's thread
        self._thread = threading.current_thread()
        # Before anything is journaled or git touched: one controller per tag (a second one
        # would "resume" the live night, and both would then stop on each other's writes).
        self._lock = TagLock(self.state / self.tag / "controller.lock")
        self._lock.acquire(self.tag)
        try:
            self._set_up()
        except BaseException:
            self._lock.release()
            raise

    def _set_up(self) -> None:
        self.base_commit = self._start_tag()
        self.journal.watch(self.tag)  # from here on, only this controller writes the tag's rows
        self._kill_survivors()
        self._sweep_worktrees()
        self.protected_hashes = protected_hashes(self.task, self.base_commit)
        self.baseline_files = gitops.read_files(self.root, self.base_commit, self.task.editable)

    # --- setup ------------------------------------------------------------------------------
    def _check_files(self) -> None:
        """Before anything is written: every file the spec names is committed (a git-ignored or
        untracked one is not in any run's checkout, and a protected one would be checked
        against nothing), and every `[knobs]` entry names a constant of the editable files."""
        from overnight.knobs import unknown_declared

        head = gitops.head(self.root)
        for p in self.task.editable + self.task.protected:
            if gitops.read_file(self.root, head, p) is None:
                ignored = (
                    subprocess.run(
                        ["git", "-C", str(self.root), "check-ignore", "-q", "--", p], capture_output=True
                    ).returncode
                    == 0
                )
                why = "is git-ignored" if ignored else "is not committed"
                fix = "un-ignore it and commit it" if ignored else "commit it (git add, git commit)"
                raise OvernightError(f"{p!r}, named in overnight.toml, {why} — {fix}: runs check out HEAD only")
        files = gitops.read_files(self.root, head, self.task.editable)
        bad = unknown_declared(files, self.task.knobs)
        if bad:
            consts = [n for src in (files[f] for f in files if f.endswith(".py")) for n in _names(src)]
            close = difflib.get_close_matches(bad[0].partition("[")[0], consts, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "declare only UPPER_CASE constants of the editable files"
            raise OvernightError(
                f"overnight.toml: knobs.{bad[0]} names no constant of "
                f"{', '.join(self.task.editable)} (a tuple takes NAME[i] or false) — {hint}"
            )

    def _start_tag(self) -> str:
        info = self.journal.tag_info(self.tag)
        if info is not None:
            recovered = self.journal.recover(self.tag)
            if recovered:
                self.journal.event(self.tag, "resume", f"{recovered} interrupted run(s) will run again")
                self.obs.message(f"resuming {self.tag}: {recovered} interrupted run(s) will run again")
            return info["base_commit"]
        dirty = gitops.dirty_files(self.root, self.task.editable + self.task.protected)
        if dirty:
            raise OvernightError(
                f"uncommitted changes in {', '.join(dirty)} — commit them (the run starts from HEAD) or stash them"
            )
        base = gitops.head(self.root)
        if gitops.rev_parse(self.root, f"refs/heads/overnight/{self.tag}"):
            raise OvernightError(
                f"branch overnight/{self.tag} exists but the journal does not know it — "
                "pick another --tag or delete the branch"
            )
        self.journal.add_tag(self.tag, base, asdict(self.cfg) | {"budget": self.task.budget})
        gitops.update_ref(self.root, f"refs/heads/overnight/{self.tag}", base, old="")  # not there: checked above
        return base

    def _kill_survivors(self) -> None:
        """Before anything runs: kill what a killed controller of this tag left running (runs
        carry the tag's marker, runner.TAG_MARKER_VAR). Its reapers die with it (reaper.py);
        this catches what they missed (a reaper itself SIGKILLed, a descendant that escaped),
        so the same experiment never runs twice side by side. After the tag's lock (TagLock):
        were another controller of the tag alive, these would be its live runs."""
        killed = kill_tag_survivors(self.state / self.tag)
        if killed:
            text = f"killed {killed} process(es) of {self.tag} left running by a previous controller"
            self.journal.event(self.tag, "survivors", text)
            self.obs.message(text)

    def _move_branch(self, new: str) -> None:
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

    def _sweep_worktrees(self) -> None:
        """Remove this tag's worktrees left by a killed controller (its interrupted runs are
        re-run in fresh ones); otherwise they stay registered in `git worktree list` forever."""
        mine = re.compile(re.escape(self.tag) + r"-(\d+-\d+|setup)")
        for path in sorted((self.state / "worktrees").glob("*")):
            if mine.fullmatch(path.name):
                gitops.worktree_remove(self.root, path)
        gitops.git(self.root, "worktree", "prune", check=False)

    # --- the night ----------------------------------------------------------------------------
    def run(self) -> None:
        self._lock.acquire(self.tag)  # held since __init__; again if run() is called again
        try:
            self._night()
        finally:
            self._lock.release()  # the night is over; the process may go on (tests, a library user)

    def _night(self) -> None:
        from overnight.executors import make_executor
        from overnight.night.scheduler import Scheduler

        self._replay()
        self._setup()
        if self.stop.is_set():
            return
        # Before any run starts: afterwards the harness never opens the held-out file (watch.py).
        heldout_store.ensure(self.task, self.base_commit, self.protected_hashes, self.obs.message)
        unwatched = watch.available() if heldout_store.watched_paths(self.task) else ""
        if unwatched:  # the runs go on; each run's summary says so too
            self.obs.message(f"the held-out data is not watched here: {unwatched}")
        hidden = credentials.withheld(pass_env=self.task.pass_env)
        if hidden:  # names only, never values
            self.obs.message(
                f"credentials withheld from runs and the agent: {', '.join(hidden)} "
                "(a task that needs one lists it in [task] pass_env)"
            )
        if self.task.limits.sandbox:  # say which one, or why none (each run then fails with the reason)
            self.obs.message(f"sandbox: {sandbox.tool() or 'unavailable: ' + sandbox.unavailable()}")
        executor = self.executor or make_executor(self.task, self.cfg)
        try:
            Scheduler(self, executor).run()
        finally:
            if self.executor is None:
                executor.close()
            self.drain_inbox()
            self.journal.write_results_tsv(self.tag, self.results_path)

    def _setup(self) -> None:
        """The task's setup command, before any run and outside every run's clock (task_setup.py)."""
        if not self.task.setup:
            return
        self.obs.message(f"setup: {self.task.setup} (once, before the runs; log in {self.tag}/setup.txt)")
        seconds = task_setup.run_setup(self.task, self.base_commit, self.state, self.tag, self.cfg.seed, self.stop)
        if seconds is not None:
            self.journal.event(self.tag, "setup", f"{self.task.setup}: done in {seconds:.1f} s")
            self.obs.message(f"setup done in {seconds:.1f} s")

    def _replay(self) -> None:
        """On resume: point the branch at the incumbent and tell the proposer every finished
        experiment (observe is idempotent), so a restarted proposer knows the whole night."""
        history = self.journal.experiments(self.tag)
        inc = self.incumbent(history)
        if inc is None:
            return
        self._move_branch(inc.commit_sha)
        ctx = self.context(history)
        for exp in history:
            if exp.status.final:
                self.proposer.observe(exp, ctx)

    @property
    def results_path(self) -> Path:
        path = self.state / self.tag / "results.tsv"
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
            say=self._say,
            stop=self.stop,
        )

    def _say(self, kind: str, message: str) -> None:
        """A proposer's news (e.g. falling back to optuna): journaled, and shown live."""
        if threading.current_thread() is not self._thread:
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
            self._say(kind, message)

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
        proposal = self.proposer.rebase(exp, ctx)
        edits = (
            proposal.edits
            if proposal is not None
            else gitops.merge_edits(self.root, exp.base_commit, ctx.incumbent.commit_sha, exp.edits)
        )
        if edits is None:
            return None
        edits = {p: t for p, t in edits.items() if ctx.incumbent_files.get(p) != t}
        return edits or None

    def materialise(self, exp: Experiment, history: list[Experiment]) -> Experiment | None:
        """Make the candidate's commit (idempotent) on top of the current incumbent; reject
        edits outside the editable files, and candidates whose rebase is empty."""
        if exp.params.get(REJECTED_KEY) and exp.commit_sha is None:  # a failed proposal: never run
            self.finish(exp, ExpStatus.REJECTED, exp.params[REJECTED_KEY])
            return None
        outside = sorted(set(exp.edits) - set(self.task.editable))
        if outside and exp.commit_sha is None:
            self.finish(exp, ExpStatus.REJECTED, f"edits non-editable file(s): {', '.join(outside)}")
            return None
        seed_only = exp.commit_sha is None and seed_only_change(
            gitops.read_files(self.root, exp.base_commit, list(exp.edits)), exp.edits
        )
        if seed_only:
            self.finish(exp, ExpStatus.REJECTED, seed_only)
            return None
        inc = self.incumbent(history)
        measured = any(r.status != "interrupted" for r in exp.runs)
        if exp.parent_id is not None and inc is not None and exp.parent_id != inc.id and not measured:
            edits = self.rebased_edits(exp, history)
            if edits is None:
                self.finish(
                    exp,
                    ExpStatus.REJECTED,
                    f"stale: proposed on #{exp.parent_id}; its change is already "
                    f"in (or cannot be merged onto) #{inc.id}, kept since",
                )
                return None
            desc = re.sub(r" \(rebased onto #\d+\)$", "", exp.description) + f" (rebased onto #{inc.id})"
            self.journal.rebase_experiment(exp.id, inc.id, inc.commit_sha, edits, desc)
            exp = self.journal.experiment(exp.id)
        if exp.commit_sha is None:
            sha = gitops.make_commit(
                self.root, exp.base_commit, exp.edits, f"overnight {self.tag} #{exp.id}: {exp.description}"
            )
            self.journal.set_commit(exp.id, sha, gitops.diff(self.root, exp.base_commit, sha))
        exp = self.journal.experiment(exp.id)
        gitops.update_ref(self.root, f"refs/overnight/{self.tag}/{exp.id}", exp.commit_sha)
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
        # Journal first, then the branch: a crash between the two is repaired on resume.
        self.journal.set_status(exp.id, status, reason, value)
        if status == ExpStatus.KEPT:
            self._move_branch(exp.commit_sha)
        exp = self.journal.experiment(exp.id)
        if status != ExpStatus.KEPT:  # its checkpoints go (limits: disk); its logs and results stay
            for run in exp.runs:
                prune_run_dir(self.state / self.tag / "runs" / f"{exp.id}-{run.id}")
        history = self.journal.experiments(self.tag)
        if self.incumbent(history) is not None:
            (self.tell_via or self.proposer.observe)(exp, self.context(history))
        self.journal.write_results_tsv(self.tag, self.results_path)
        self.obs.experiment_finished(exp)
