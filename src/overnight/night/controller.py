"""The controller: sets a night up, runs it, tears it down.

Every state change is a journal write first and an action second, so a controller killed at
any instant restarts with the same command and carries on: runs found `running` are marked
interrupted and their experiments run again; a proposal journaled but not yet committed is
committed from its stored edits; the branch is re-pointed at the last kept commit.

The controller owns what a night needs before its first run and after its last: the files
checked, the tag started or resumed (and locked: one controller per tag), survivors of a
killed controller swept, the proposer told the journal's history again, the task's setup,
the held-out slice, the executor. What happens in between is the scheduler's
(`scheduler.py`, the loop), acting on the night's state through `state.Night`.
"""

from __future__ import annotations

import difflib
import threading
import time
from dataclasses import asdict
from pathlib import Path

from overnight import gitops, layout
from overnight.errors import OvernightError
from overnight.judges import Judge, make_judge
from overnight.layout import TagPaths
from overnight.night import seeding
from overnight.night import setup as task_setup
from overnight.night.asker import Asker
from overnight.night.config import Observer, RunConfig
from overnight.night.state import Night
from overnight.night.tags import TagLock, check_tag, open_journal, resolve_tag, state_folder
from overnight.proposers import Context, Proposer, make_proposer
from overnight.records import EventKind, Experiment, incumbent
from overnight.run import credentials, heldout_store, sandbox, watch
from overnight.run.environ import protected_hashes
from overnight.run.process import kill_tag_survivors
from overnight.task import TaskSpec
from overnight.task_load import load_task


def _names(source: str) -> list[str]:
    from overnight.knobs import find_constants

    try:
        return list(find_constants(source))
    except (SyntaxError, ValueError):
        return []


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
        self.task: TaskSpec = load_task(self.root).with_budget(cfg.budget)
        off = cfg.screen_off(self.task) if cfg.screen is None else ""
        self._no_screen = off or None  # said once in the journal (_prepare_runs)
        self.cfg = cfg = cfg.resolved(self.task, off)  # screening on by default only where it can work
        self.seed_secret: str | None = None  # the night's (seeding.py), set with its tag
        if cfg.screen and cfg.judge != "noise":
            raise OvernightError(
                f"--screen needs the noise judge (the screen is scaled by the noise it measures), not "
                f"--judge {cfg.judge} — drop --screen, or use --judge noise"
            )
        if cfg.screen and self.task.fixed_budget:
            raise OvernightError(
                "--screen gives a candidate a shorter budget through OVERNIGHT_BUDGET, and this task's "
                "budget is fixed by its own code (task.fixed_budget) — drop --screen"
            )
        self.obs = observer or Observer()
        self.stop = stop or threading.Event()
        self.started = time.monotonic()  # --hours counts from here (scheduler.py)
        if cfg.tag is not None:
            check_tag(cfg.tag)
        self._check_files()
        self.state = state_folder(self.root)
        self.state.mkdir(exist_ok=True)
        gitops.ignore_locally(self.root, f"/{layout.STATE_DIR}/")
        self.journal = open_journal(self.root)
        self.tag = resolve_tag(self.journal, cfg.tag)
        if cfg.log_to:
            self.obs = self._tracking(self.obs)
        self.judge: Judge = make_judge(cfg.judge, cfg.noise)
        self.proposer: Proposer = proposer or make_proposer(cfg.proposer, cfg.proposer_options)
        self.executor = executor  # None: built from cfg when the night starts (Ray connects then)
        # Before anything is journaled or git touched: one controller per tag (a second one
        # would "resume" the live night, and both would then stop on each other's writes).
        self.paths = TagPaths(self.state, self.tag)
        self._lock = TagLock(self.paths.lock)
        self._lock.acquire(self.tag)
        try:
            self._open_night()
        except BaseException:
            self._lock.release()
            raise

    def _tracking(self, inner: Observer) -> Observer:
        from overnight.report.trackers import TrackingObserver, make_trackers

        trackers, failed = make_trackers(self.cfg.log_to, self.tag, self.root)
        for text in failed:
            self.journal.event(self.tag, EventKind.TRACKER, text)
            inner.message(f"tracker failed to start (the night goes on): {text}")
        return TrackingObserver(inner, trackers, self.journal, self.tag, self.task.metric.name)

    def _open_night(self) -> None:
        """The tag started or resumed and claimed, survivors of a killed controller swept, the
        night's state built (`_run_task_setup` is the task's own setup command, later)."""
        self.base_commit = self._start_tag()
        self.journal.claim(self.tag)  # from here on, only this controller writes the tag's rows
        self._kill_survivors()
        self._sweep_worktrees()
        self.night = Night(
            root=self.root,
            task=self.task,
            cfg=self.cfg,
            tag=self.tag,
            journal=self.journal,
            judge=self.judge,
            proposer=self.proposer,
            asker=Asker(self.proposer),
            obs=self.obs,
            stop=self.stop,
            paths=self.paths,
            base_commit=self.base_commit,
            baseline_files=gitops.read_files(self.root, self.base_commit, self.task.editable),
            protected_hashes=protected_hashes(self.task, self.base_commit),
            started=self.started,
            seed_secret=self.seed_secret,
        )

    @property
    def results_path(self) -> Path:
        """The night's results.tsv (autoresearch's format)."""
        return self.paths.results_tsv

    def incumbent(self, history: list[Experiment]) -> Experiment | None:
        return incumbent(history)

    def context(self, history: list[Experiment]) -> Context:
        """What a proposer is shown (Night.context)."""
        return self.night.context(history)

    # --- setup ------------------------------------------------------------------------------
    def _check_files(self) -> None:
        """Before anything is written: every file the spec names is committed (a git-ignored or
        untracked one is not in any run's checkout, and a protected one would be checked
        against nothing), and every `[knobs]` entry names a constant of the editable files."""
        from overnight.knobs import unknown_declared

        head = gitops.head(self.root)
        for p in self.task.editable + self.task.protected:
            if gitops.read_file(self.root, head, p) is None:
                ignored = gitops.run_git(["-C", str(self.root), "check-ignore", "-q", "--", p], capture_output=True)
                ignored = ignored.returncode == 0
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
                self.journal.event(self.tag, EventKind.RESUME, f"{recovered} interrupted run(s) will run again")
                self.obs.message(f"resuming {self.tag}: {recovered} interrupted run(s) will run again")
            self.seed_secret = info["config"].get(seeding.SECRET_KEY)
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
        self.seed_secret = seeding.new_secret() if self.cfg.seed_secret is None else self.cfg.seed_secret
        config = asdict(self.cfg) | {"budget": self.task.budget, seeding.SECRET_KEY: self.seed_secret}
        self.journal.add_tag(self.tag, base, config)
        gitops.update_ref(self.root, f"refs/heads/overnight/{self.tag}", base, old="")  # not there: checked above
        return base

    def _kill_survivors(self) -> None:
        """Before anything runs: kill what a killed controller of this tag left running (runs
        carry the tag's marker, runner.TAG_MARKER_VAR). Its reapers die with it (reaper.py);
        this catches what they missed (a reaper itself SIGKILLed, a descendant that escaped),
        so the same experiment never runs twice side by side. After the tag's lock (TagLock):
        were another controller of the tag alive, these would be its live runs."""
        killed = kill_tag_survivors(self.paths.folder)
        if killed:
            text = f"killed {killed} process(es) of {self.tag} left running by a previous controller"
            self.journal.event(self.tag, EventKind.SURVIVORS, text)
            self.obs.message(text)

    def _sweep_worktrees(self) -> None:
        """Remove this tag's worktrees left by a killed controller (its interrupted runs are
        re-run in fresh ones); otherwise they stay registered in `git worktree list` forever."""
        mine = self.paths.worktree_names()
        for path in sorted(layout.worktrees(self.state).glob("*")):
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

        night = self.night
        # The proposer may have been replaced since __init__ (a library user, the tests); each
        # night gets a fresh thread for it.
        night.proposer, night.asker = self.proposer, Asker(self.proposer)
        try:
            self._replay()
            self._run_task_setup()
            if self.stop.is_set():
                return
            self._prepare_runs()
            executor = self.executor or make_executor(self.task, self.cfg)
            try:
                Scheduler(night, executor).run()
            finally:
                if self.executor is None:
                    executor.close()
        finally:
            night.asker.close()  # a proposal in progress is finished, not torn
            night.drain_inbox()
            self.journal.write_results_tsv(self.tag, night.results_path)
            if self.cfg.log_to:  # the trackers' summary values (report/trackers.py)
                self.obs.night_over(self.journal.experiments(self.tag))

    def _prepare_runs(self) -> None:
        """The held-out slice, and what each run will (not) see, said once."""
        # Before any run starts: afterwards the harness never opens the held-out file (watch.py).
        heldout_store.ensure(self.task, self.base_commit, self.night.protected_hashes, self.obs.message)
        unwatched = watch.available() if heldout_store.watched_paths(self.task) else ""
        if unwatched:  # the runs go on; each run's summary says so too
            self.obs.message(f"the held-out data is not watched here: {unwatched}")
        hidden = credentials.withheld(pass_env=self.task.pass_env)
        if hidden:  # names only, never values
            self.obs.message(
                f"credentials withheld from runs and the agent: {', '.join(hidden)} "
                "(a task that needs one lists it in [task] pass_env)"
            )
        if self._no_screen and not self.journal.events(self.tag, EventKind.SCREEN_OFF):  # once a night
            self.journal.event(self.tag, EventKind.SCREEN_OFF, self._no_screen)
            self.obs.message(f"screening off: {self._no_screen}")
        which, why = sandbox.choose(self.task.limits.sandbox)  # which one, or why none
        if which:
            self.obs.message(f"sandbox: {which} (limits.sandbox = {self.task.limits.sandbox})")
        elif why:  # on, and none works: each run fails with the reason
            self.obs.message(f"sandbox: {why}")
        elif self.task.limits.sandbox == "auto":
            self.obs.message(
                f"sandbox: none works here, runs are not sandboxed ({sandbox.unavailable().split(' — ')[0]})"
            )

    def _run_task_setup(self) -> None:
        """The task's setup command, before any run and outside every run's clock (task_setup.py)."""
        if not self.task.setup:
            return
        self.obs.message(f"setup: {self.task.setup} (once, before the runs; log in {self.tag}/setup.txt)")
        seconds = task_setup.run_setup(self.task, self.base_commit, self.paths, self.cfg.seed, self.stop)
        if seconds is not None:
            self.journal.event(self.tag, EventKind.SETUP, f"{self.task.setup}: done in {seconds:.1f} s")
            self.obs.message(f"setup done in {seconds:.1f} s")

    def _replay(self) -> None:
        """On resume: point the branch at the incumbent and tell the proposer every finished
        experiment (observe is idempotent), so a restarted proposer knows the whole night."""
        history = self.journal.experiments(self.tag)
        inc = self.incumbent(history)
        if inc is None:
            return
        self.night.move_branch(inc.commit_sha)
        ctx = self.context(history)
        for exp in history:
            if exp.status.final:
                self.night.asker.tell(exp, ctx)
