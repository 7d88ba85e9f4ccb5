"""One run: a candidate's commit executed in its own worktree under the budget.

`execute` checks the commit out, `run_checkout` runs the task's command there as process.py
supervises it and reads the outcome (outcome.py). Before and after, the protected files are
hash-checked against the task's (environ.py's `protected_hashes`): a candidate that rewrote the evaluation
it then imported is INVALID. The run directory holds the harness's record (RUN_RECORD); a
file the run left at one of the harness's later names is a trap, and the run INVALID. With
`limits.sandbox` the command runs in `bwrap` or `unshare` (sandbox.py): no network, writable
only the run's worktree and run directory (bwrap: and a private /tmp), the held-out data
hidden. While the run is alive the held-out data (`.overnight/heldout/`, `task.watch`) is
watched with inotify (watch.py): an open -> `reads-heldout`. A request with `rescore` is
re-scored and held-out scored right after the run (scoring.py); the night's runs are not
(the re-score runs later, in a slot of its own, before a keep).

What this does NOT protect against: code that reads the validation data — the candidate runs
in the same process as the protected evaluation, so anything the evaluation can read, it can
read (reads of val.bin cannot be told from the evaluation's own; the held-out slice is what
catches a fit of it); without the sandbox, writes outside its worktree (the journal in
`.overnight/` included, which the tamper check detects). See docs/threat-model.md.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

from overnight import gitops
from overnight.records import RunRequest, RunResult, RunStatus
from overnight.run import heldout_store, outside, runfiles, scoring
from overnight.run.environ import confine, protected_changed, run_env
from overnight.run.outcome import judge_outcome, reads_heldout
from overnight.run.process import ProgressFn, run_process
from overnight.run.watch import Watch
from overnight.task import TaskSpec

RUN_RECORD = (
    "log.txt",
    "result.json",
    "rescore.txt",
    "rescore.json",
    "heldout.txt",
    "heldout.json",
)  # what pruning keeps
HARNESS_LATER = RUN_RECORD[2:]  # written by the harness after the run: the run may not create them


def execute(
    task: TaskSpec, req: RunRequest, stop: threading.Event | None = None, progress: ProgressFn | None = None
) -> RunResult:
    """Materialise the worktree, run the command, collect the outcome; never raises for the
    candidate's faults (a broken candidate is data)."""
    req.run_dir.mkdir(parents=True, exist_ok=True)
    guard = outside.guard(task.root, task.command)
    guard.check()  # what an earlier run changed is put back before git reads it (and blamed on that run)
    with gitops.worktree(task.root, req.worktree, req.commit):
        return run_checkout(task, req, stop, progress, guard)


def run_checkout(
    task: TaskSpec,
    req: RunRequest,
    stop: threading.Event | None = None,
    progress: ProgressFn | None = None,
    guard: outside.Outside | None = None,
) -> RunResult:
    """Run the command in `req.worktree`, already holding the commit's files (a git worktree
    here, an unpacked archive on a Ray worker that has no clone of the repository). `guard`:
    the repository's outside.py guard, checked when the run ends (a Ray worker has none)."""
    mark = guard.mark() if guard is not None else 0
    if req.budget is not None:  # a screen run: OVERNIGHT_BUDGET, the timeout and the budget check follow it
        task = task.with_budget(req.budget)
    req.run_dir.mkdir(parents=True, exist_ok=True)
    log_path = req.run_dir / "log.txt"
    result_path = req.run_dir / "result.json"
    for name in RUN_RECORD:  # an earlier run's record in a reused directory (verify), or a trap
        runfiles.remove(req.run_dir / name)
    bad = protected_changed(req)
    if bad:
        return RunResult(
            RunStatus.INVALID,
            log_path=str(log_path),
            error=f"protected file(s) differ from the task's: {', '.join(bad)}",
        )
    env = run_env(task, req, result_path)
    command, which, why = confine(task, task.command, [req.worktree, req.run_dir])
    if why:
        return RunResult(RunStatus.CRASH, log_path=str(log_path), error=why)
    with Watch(heldout_store.watched_paths(task)) as watch:
        outcome = run_process(command, req.worktree, env, log_path, task.timeout, stop, progress, task.limits)
    res = judge_outcome(task, outcome, log_path, result_path, _slot_cores(req))
    if not req.worktree.is_dir() and res.status != RunStatus.INTERRUPTED:  # removed by hand: not the candidate's
        res.status, res.value = RunStatus.INTERRUPTED, None
        res.error = f"its worktree {req.worktree} was removed while it ran (not by the harness)"
        return res
    if guard is not None:
        guard.check()
        if guard.since(mark):  # this run's, or one beside it (then both are invalid: it cannot be told)
            res.status, res.value = RunStatus.INVALID, None
            res.error = (
                "tampering: files outside the run directory changed while it ran (put back where a copy was "
                f"kept): {'; '.join(guard.since(mark)[:5])}"
            )
            return res
    trapped = _traps(req.run_dir)
    if trapped and res.status != RunStatus.INTERRUPTED:
        res.status, res.value = RunStatus.INVALID, None
        res.error = f"the run left traps in its run directory: {'; '.join(trapped)}"
        return res
    if which:
        res.summary["sandbox"] = which  # which one ran it (its first log line says so too)
    if reads_heldout(res, watch, "while it ran"):
        return res
    changed = protected_changed(req) if res.status not in (RunStatus.INTERRUPTED, RunStatus.TIMEOUT) else []
    if changed:  # rewritten while it ran (the evaluation it then imported, or the re-score's code)
        res.status, res.value = RunStatus.INVALID, None
        res.error = f"protected file(s) changed during the run: {', '.join(changed)}"
        return res
    if res.status == RunStatus.OK and task.rescore and req.rescore:
        if (req.worktree / ".git").exists():  # a git worktree: the re-score starts from the commit's files only
            gitops.clean_worktree(req.worktree)
        scoring.rescore(task, req, env, res, stop)
        if res.status == RunStatus.OK:
            scoring.heldout_score(task, req, env, res, stop)
    return res


def _slot_cores(req: RunRequest) -> int | None:
    """The cores a CPU slot gives its runs (executors/local.py sets OMP_NUM_THREADS); None: all."""
    try:
        return max(1, int(req.extra_env.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return None


def _traps(run_dir: Path) -> list[str]:
    """What the run left in its directory that the harness would read as its own."""
    return runfiles.traps(run_dir, ("log.txt", "result.json")) + [
        f"{name} exists (only the harness writes it, after the run)"
        for name in HARNESS_LATER
        if os.path.lexists(run_dir / name)
    ]


def prune_run_dir(run_dir: Path) -> int:
    """Delete what a run left in its directory besides its record (checkpoints, samples):
    called for experiments that were not kept. Returns the bytes freed."""
    freed = 0
    if not run_dir.is_dir():
        return 0
    for p in run_dir.iterdir():
        if p.name in RUN_RECORD:
            continue
        try:
            if p.is_dir() and not p.is_symlink():
                freed += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
                shutil.rmtree(p, ignore_errors=True)
            else:
                freed += p.lstat().st_size
                p.unlink()
        except OSError:
            pass
    return freed
