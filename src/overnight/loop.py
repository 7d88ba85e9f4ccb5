"""The controller: propose, commit, run, judge, keep or discard, all night.

Every state change is a journal write first and an action second, so a controller killed at
any instant restarts with the same command and carries on: runs found `running` are marked
interrupted and their experiments run again; a proposal journaled but not yet committed is
committed from its stored edits; the branch is re-pointed at the last kept commit.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

from overnight import gitops
from overnight.errors import OvernightError
from overnight.journal import Experiment, ExpStatus, Journal
from overnight.judges import Judge, make_judge
from overnight.judges.noise import NoiseSettings
from overnight.proposers import Context, Proposal, Proposer, ProposerOptions, make_proposer
from overnight.proposers.base import REJECTED_KEY
from overnight.status import incumbent
from overnight.runner import RunRequest, RunResult, RunStatus, execute
from overnight.task import TaskSpec, file_hash, load_task

STATE_DIR = ".overnight"
MAX_INCUMBENT_FAILURES = 3
FAILED_STATUS = {RunStatus.CRASH: ExpStatus.CRASHED, RunStatus.TIMEOUT: ExpStatus.TIMEOUT,
                 RunStatus.INVALID: ExpStatus.INVALID}


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


class Observer:
    """What the controller tells the outside (the CLI's live view). No-op by default."""

    def experiment_started(self, exp: Experiment, run_index: int) -> None: ...
    def progress(self, exp: Experiment, elapsed: float) -> None: ...
    def experiment_finished(self, exp: Experiment) -> None: ...
    def message(self, text: str) -> None: ...


def state_dir(root: Path) -> Path:
    return Path(root) / STATE_DIR


def open_journal(root: Path) -> Journal:
    return Journal(state_dir(root) / "journal.db")


def resolve_tag(journal: Journal, tag: str | None) -> str:
    if tag:
        if not all(c.isalnum() or c in "-_." for c in tag):
            raise OvernightError(f"tag {tag!r} may only hold letters, digits, '-', '_' and '.'")
        return tag
    existing = journal.tags()
    return existing[-1] if existing else date.today().strftime("%b%d").lower()


class Controller:
    def __init__(self, root: Path, cfg: RunConfig, observer: Observer | None = None,
                 stop: threading.Event | None = None, proposer: Proposer | None = None):
        self.root = gitops.toplevel(Path(root).resolve())
        self.cfg = cfg
        self.obs = observer or Observer()
        self.stop = stop or threading.Event()
        self.task: TaskSpec = load_task(self.root).with_budget(cfg.budget)
        self.state = state_dir(self.root)
        self.state.mkdir(exist_ok=True)
        gitops.ignore_locally(self.root, f"/{STATE_DIR}/")
        self.journal = open_journal(self.root)
        self.tag = resolve_tag(self.journal, cfg.tag)
        self.judge: Judge = make_judge(cfg.judge, cfg.noise)
        self.proposer: Proposer = proposer or make_proposer(cfg.proposer, cfg.proposer_options)
        self.base_commit = self._start_tag()
        self._sweep_worktrees()
        self.protected_hashes = {p: file_hash(gitops.read_file(self.root, self.base_commit, p) or b"")
                                 for p in self.task.protected}
        self.baseline_files = gitops.read_files(self.root, self.base_commit, self.task.editable)

    # --- setup ------------------------------------------------------------------------------
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
            raise OvernightError(f"uncommitted changes in {', '.join(dirty)} — commit them (the run starts "
                                 "from HEAD) or stash them")
        base = gitops.head(self.root)
        if gitops.rev_parse(self.root, f"refs/heads/overnight/{self.tag}"):
            raise OvernightError(f"branch overnight/{self.tag} exists but the journal does not know it — "
                                 "pick another --tag or delete the branch")
        self.journal.add_tag(self.tag, base, asdict(self.cfg) | {"budget": self.task.budget})
        gitops.update_ref(self.root, f"refs/heads/overnight/{self.tag}", base)
        return base

    def _sweep_worktrees(self) -> None:
        """Remove this tag's worktrees left by a killed controller (its interrupted runs are
        re-run in fresh ones); otherwise they stay registered in `git worktree list` forever."""
        mine = re.compile(re.escape(self.tag) + r"-\d+-\d+")
        for path in sorted((self.state / "worktrees").glob("*")):
            if mine.fullmatch(path.name):
                gitops.worktree_remove(self.root, path)
        gitops.git(self.root, "worktree", "prune", check=False)

    # --- the loop -----------------------------------------------------------------------------
    def run(self) -> None:
        deadline = time.monotonic() + self.cfg.hours * 3600 if self.cfg.hours else None
        self._replay()
        try:
            while not self.stop.is_set():
                history = self.journal.experiments(self.tag)
                pending = [e for e in history if e.status in (ExpStatus.PROPOSED, ExpStatus.RUNNING)]
                if not pending and self._done(history, deadline):
                    break
                exp = pending[0] if pending else self._propose(history)
                self._evaluate(exp)
        finally:
            self.proposer.close()
            self.journal.write_results_tsv(self.tag, self.results_path)

    def _replay(self) -> None:
        """On resume: point the branch at the incumbent and tell the proposer every finished
        experiment (observe is idempotent), so a restarted proposer knows the whole night."""
        history = self.journal.experiments(self.tag)
        inc = self.incumbent(history)
        if inc is None:
            return
        gitops.update_ref(self.root, f"refs/heads/overnight/{self.tag}", inc.commit_sha)
        ctx = self.context(history)
        for exp in history:
            if exp.status.final:
                self.proposer.observe(exp, ctx)

    @property
    def results_path(self) -> Path:
        path = self.state / self.tag / "results.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _done(self, history: list[Experiment], deadline: float | None) -> bool:
        if self.cfg.experiments is not None and len(history) >= self.cfg.experiments:
            return True
        # Neither limit given: run until stopped (Ctrl-C), which is what "all night" means.
        return deadline is not None and time.monotonic() >= deadline

    def incumbent(self, history: list[Experiment]) -> Experiment | None:
        return incumbent(history)

    def context(self, history: list[Experiment]) -> Context:
        inc = self.incumbent(history)
        files = gitops.read_files(self.root, inc.commit_sha, self.task.editable)
        notes = [n["message"] for n in self.journal.notes(self.tag)]
        return Context(self.task, self.tag, self.state, self.baseline_files, inc, files, history, self.cfg.seed,
                       notes=notes, say=self._say)

    def _say(self, kind: str, message: str) -> None:
        """A proposer's news (e.g. falling back to optuna): journaled, and shown live."""
        self.journal.event(self.tag, kind, message)
        self.obs.message(message)

    def _propose(self, history: list[Experiment]) -> Experiment:
        if not history:  # the first experiment of every run is the unmodified baseline
            exp_id = self.journal.add_experiment(self.tag, None, self.base_commit, "baseline", "baseline", {}, {})
            self.journal.set_commit(exp_id, self.base_commit, "")
            return self.journal.experiment(exp_id)
        ctx = self.context(history)
        proposal: Proposal = self.proposer.propose(ctx)
        exp_id = self.journal.add_experiment(self.tag, ctx.incumbent.id, ctx.incumbent.commit_sha,
                                             proposal.description, proposal.proposer or self.proposer.name,
                                             proposal.params,
                                             proposal.edits)
        return self.journal.experiment(exp_id)

    def _materialise(self, exp: Experiment) -> Experiment | None:
        """Make the candidate's commit (idempotent); reject edits outside the editable files."""
        if exp.commit_sha is None:
            if exp.params.get(REJECTED_KEY):  # a failed proposal (bad edit): journaled, never run
                self._finish(exp, ExpStatus.REJECTED, exp.params[REJECTED_KEY])
                return None
            outside = sorted(set(exp.edits) - set(self.task.editable))
            if outside:
                self._finish(exp, ExpStatus.REJECTED, f"edits non-editable file(s): {', '.join(outside)}")
                return None
            sha = gitops.make_commit(self.root, exp.base_commit, exp.edits, f"overnight {self.tag} #{exp.id}: {exp.description}")
            self.journal.set_commit(exp.id, sha, gitops.diff(self.root, exp.base_commit, sha))
        exp = self.journal.experiment(exp.id)
        gitops.update_ref(self.root, f"refs/overnight/{self.tag}/{exp.id}", exp.commit_sha)
        return exp

    def _evaluate(self, exp: Experiment) -> None:
        """Run and judge one experiment until it is decided. The judge is a pure function of
        the journaled runs, so a resumed controller picks up mid-confirmation exactly."""
        exp = self._materialise(exp)
        if exp is None:
            return
        while not self.stop.is_set():
            exp = self.journal.experiment(exp.id)
            done = [r for r in exp.runs if r.status != "interrupted"]
            if exp.parent_id is None:  # the baseline: several seeds, the first noise estimate
                if len(done) < self.judge.baseline_runs():
                    if not self._run_candidate(exp):
                        return
                    continue
                self._finish(exp, ExpStatus.KEPT, "baseline", sum(exp.ok_values) / len(exp.ok_values))
                return
            if not done:
                if not self._run_candidate(exp):
                    return
                continue
            history = self.journal.experiments(self.tag)
            inc = self.incumbent(history)
            verdict = self.judge.judge(exp, inc, self.task.metric, history)
            if verdict.action == "more":
                for _ in range(verdict.more_incumbent_runs):
                    if not self._run_incumbent(inc):
                        return
                for _ in range(verdict.more_candidate_runs):
                    if not self._run_candidate(exp):
                        return
                continue
            for flag in verdict.flags:
                self.journal.event(self.tag, flag, f"#{exp.id}: {verdict.reason}")
            status = ExpStatus.KEPT if verdict.action == "keep" else ExpStatus.DISCARDED
            self._finish(exp, status, verdict.reason, verdict.value)
            self._maybe_remeasure()
            return

    def _run_candidate(self, exp: Experiment) -> bool:
        """One more seeded run of `exp`; False when the experiment is over (failed or stopped)."""
        res = self._run_once(exp)
        if res.status == RunStatus.OK:
            return True
        if res.status != RunStatus.INTERRUPTED:
            exp = self.journal.experiment(exp.id)
            self._finish(exp, FAILED_STATUS[res.status], f"{res.error}\n{res.log_tail[-2000:]}".strip())
            if exp.parent_id is None:
                raise OvernightError(f"the baseline run failed ({res.status.value}: {res.error}) — "
                                     f"fix the task first; log: {res.log_path}")
        return False

    def _run_incumbent(self, inc: Experiment) -> bool:
        """Re-measure the incumbent (its status stays kept); its value becomes the new mean."""
        res = self._run_once(inc)
        if res.status == RunStatus.INTERRUPTED:
            return False
        inc = self.journal.experiment(inc.id)
        if res.status != RunStatus.OK:
            failures = sum(r.status not in ("ok", "interrupted") for r in inc.runs)
            self.journal.event(self.tag, "incumbent-failed", f"#{inc.id} failed when re-run: {res.error}")
            if failures >= MAX_INCUMBENT_FAILURES:
                raise OvernightError(f"the incumbent #{inc.id} failed {failures} times when re-run — the task "
                                     f"is flaky or the machine changed; see {res.log_path}")
            return True
        self.journal.set_value(inc.id, sum(inc.ok_values) / len(inc.ok_values))
        return True

    def _maybe_remeasure(self) -> None:
        """Drift: re-run the incumbent from time to time, so a machine that got slower or
        faster shows up in status instead of silently biasing keeps."""
        history = self.journal.experiments(self.tag)
        inc = self.incumbent(history)
        if inc is None or not self.judge.remeasure_due(inc, history) or self.stop.is_set():
            return
        if self._run_incumbent(inc):
            history = self.journal.experiments(self.tag)
            drift = self.judge.drift(self.journal.experiment(inc.id), history)
            if drift:
                self.journal.event(self.tag, "drift", drift)
                self.obs.message(f"drift: {drift}")

    def _run_once(self, exp: Experiment) -> RunResult:
        # Count replicates from the journal, not from `exp`: callers run several in a row with
        # the same (stale) object, and each replicate needs its own seed.
        replicate = sum(r.status != "interrupted" for r in self.journal.experiment(exp.id).runs)
        seed = self.cfg.seed + replicate
        run_id = self.journal.start_run(exp.id, seed, slot="0", node="local")
        self.obs.experiment_started(exp, replicate)
        req = RunRequest(commit=exp.commit_sha, seed=seed,
                         run_dir=self.state / self.tag / "runs" / f"{exp.id}-{run_id}",
                         worktree=self.state / "worktrees" / f"{self.tag}-{exp.id}-{run_id}",
                         protected_hashes=self.protected_hashes)
        res = execute(self.task, req, stop=self.stop, progress=lambda t: self.obs.progress(exp, t))
        self.journal.finish_run(run_id, res)
        if res.status == RunStatus.INTERRUPTED:
            self.journal.recover(self.tag)
        return res

    def _finish(self, exp: Experiment, status: ExpStatus, reason: str, value: float | None = None) -> None:
        # Journal first, then the branch: a crash between the two is repaired on resume.
        self.journal.set_status(exp.id, status, reason, value)
        if status == ExpStatus.KEPT:
            gitops.update_ref(self.root, f"refs/heads/overnight/{self.tag}", exp.commit_sha)
        exp = self.journal.experiment(exp.id)
        history = self.journal.experiments(self.tag)
        if self.incumbent(history) is not None:
            self.proposer.observe(exp, self.context(history))
        self.journal.write_results_tsv(self.tag, self.results_path)
        self.obs.experiment_finished(exp)
