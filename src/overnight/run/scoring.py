"""The re-score and the held-out score of a run that ended, each in a fresh process.

The **re-score** (`rescore`): the task's protected `rescore` command scores the run again in
a process that never ran the candidate's training loop, against the value the run reported;
a disagreement beyond `rescore_tolerance` makes the run MISMATCH (discarded, flagged). The
**held-out score** (`heldout_score`): after a re-score that agreed, the run's weights are
scored on the held-out slice (`[heldout]`, heldout_store.py), the keep compares it.

The night re-scores a run only when its candidate is about to be kept, in a slot of its own
(night/rescorer.py: never beside a timed run, whose clock it would slow): `rescore_run` checks
the commit out again, `rescore_checkout` does both scores in a checkout that already holds it
(a git worktree here, an unpacked archive on a Ray worker, executors/ray_worker.py). A run
executed with `RunRequest.rescore` gets both right after it (execute.py).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import threading
from dataclasses import replace
from pathlib import Path

from overnight import gitops
from overnight.records import RunRequest, RunResult, RunStatus
from overnight.run import heldout_store, outside, runfiles
from overnight.run.environ import confine, protected_changed, run_env
from overnight.run.outcome import read_metric, reads_heldout
from overnight.run.process import ProcessOutcome, run_process
from overnight.run.watch import Watch
from overnight.task import TaskSpec


def rescore_run(task: TaskSpec, req: RunRequest, value: float, stop: threading.Event | None = None) -> RunResult:
    """The re-score of a run that already ended (its worktree is gone, its run directory with
    result.json and any saved weights is still there): a fresh worktree of `req.commit`, then
    rescore_checkout. Returns OK with summary["rescored"], MISMATCH with the reason, or
    INTERRUPTED (stop)."""
    outside.guard(task.root, task.command).check()  # what a run changed outside is put back before git reads it
    with gitops.worktree(task.root, req.worktree, req.commit):
        return rescore_checkout(task, req, value, stop)


def rescore_checkout(
    task: TaskSpec, req: RunRequest, value: float, stop: threading.Event | None = None, heldout: bytes | None = None
) -> RunResult:
    """Re-score the ended run in `req.run_dir` from `req.worktree`, a fresh checkout of its
    commit (a git worktree here, an unpacked archive on a Ray worker): protected files checked
    against the task's, then `rescore` against the journaled `value`, then the held-out score
    (`heldout`: the slice's bytes where this process did not load it, a Ray worker)."""
    res = RunResult(RunStatus.OK, value=value, log_path=str(req.run_dir / "rescore.txt"))
    bad = protected_changed(req)
    if bad:
        res.status = RunStatus.MISMATCH
        res.error = f"the re-score's checkout has protected file(s) differing from the task's: {', '.join(bad)}"
        return res
    env = run_env(task, req, req.run_dir / "result.json")
    rescore(task, req, env, res, stop)
    if res.status == RunStatus.OK:
        heldout_score(task, req, env, res, stop, heldout)
    return res


def rescore(task: TaskSpec, req: RunRequest, env: dict, res: RunResult, stop: threading.Event | None) -> None:
    """Score the run again with the task's protected `rescore` command, in a fresh process
    that never ran the candidate's training loop; a disagreement beyond
    `rescore_tolerance` turns the run into MISMATCH (the candidate is discarded and flagged).

    This is what makes the metric trustworthy against code in the training process: a faked
    result file, an evaluation monkeypatched at import, a score written by hand. What the
    re-score sees is whatever the protected code of the task reads (the toy: train.py's
    constants, parsed, not run; nanogpt: the weights its protected report() saved, rebuilt from
    train.py's definitions). It does not protect against a candidate that changes what is scored
    (e.g. writes better weights than it trained) within the budget, nor against code the
    re-score itself imports from the candidate's files."""
    out_path = req.run_dir / "rescore.json"
    runfiles.remove(out_path)
    log_path = req.run_dir / "rescore.txt"
    renv = {**env, "OVERNIGHT_RESULT": str(out_path), "OVERNIGHT_RESCORE": str(req.run_dir / "result.json")}
    command, _, why = confine(task, task.rescore, [req.worktree, req.run_dir], log=False)
    if why:
        res.status, res.error = RunStatus.MISMATCH, f"the protected re-score cannot run: {why}"
        return
    out = run_process(command, req.worktree, renv, log_path, task.timeout, stop, None, task.limits)
    if out.interrupted:
        res.status, res.error = RunStatus.INTERRUPTED, "stopped by the controller (during the re-score)"
        return
    value, _, err = read_metric(replace(task, metric=replace(task.metric, source="result-file")), "", out_path)
    failed = _failed("the protected re-score", out, value, err, log_path)
    if failed:
        res.status, res.error = RunStatus.MISMATCH, failed
        return
    res.summary["rescored"] = value
    if abs(value - res.value) > task.rescore_tolerance * max(abs(value), 1e-12):
        res.status = RunStatus.MISMATCH
        res.error = (
            f"re-scored by protected code in a fresh process: {task.metric.name} {value:.6g}, "
            f"but the run reported {res.value:.6g}"
        )
        return
    res.value = value  # agreed: the harness's own figure is the one judged (journal.set_rescored)


def heldout_score(
    task: TaskSpec, req: RunRequest, env: dict, res: RunResult, stop: threading.Event | None, data: bytes | None = None
) -> None:
    """The run's weights scored on the held-out slice (`[heldout]`, heldout_store.py) by harness
    code in a fresh process that reads the tokens from stdin (a memfd: the stored file is not
    opened). Writes `heldout.json` in the run directory and `summary["heldout_<metric>"]`; the
    held-out rule compares it (night/keep.py). Skipped where this process holds no held-out slice
    and is handed none (`data`: a Ray worker gets it with the re-score), as in `verify`. The
    candidate's model code runs in this process and sees the tokens: in the bwrap sandbox it
    can write nothing but a private /tmp."""
    if task.heldout is None:
        return
    data = data if data is not None else heldout_store.loaded(task)
    if data is None:
        return
    scratch = Path(tempfile.mkdtemp(prefix="overnight-heldout-"))
    log_path = req.run_dir / "heldout.txt"
    henv = {
        **env,
        "OVERNIGHT_RESULT": str(scratch / "heldout.json"),
        "OVERNIGHT_RESCORE": str(req.run_dir / "result.json"),
    }
    command = f"{task.heldout.command} score"
    command, _, _ = confine(task, command, [scratch], log=False)  # on where a run was: its own run wrapped it
    fd = heldout_store.memfd(data)
    try:
        with Watch(heldout_store.watched_paths(task)) as watch:
            out = run_process(command, req.worktree, henv, log_path, task.timeout, stop, None, task.limits, stdin=fd)
        value, _, err = read_metric(
            replace(task, metric=replace(task.metric, name=heldout_store.metric_key(task), source="result-file")),
            "",
            scratch / "heldout.json",
        )
    finally:
        os.close(fd)
        shutil.rmtree(scratch, ignore_errors=True)
    if out.interrupted:
        res.status, res.error = RunStatus.INTERRUPTED, "stopped by the controller (during the held-out score)"
        return
    if reads_heldout(res, watch, "during its held-out score"):
        # Reported as a failed re-score (the re-score's caller knows OK and MISMATCH): the keep
        # is refused, the reason says what was opened.
        res.status, res.error = RunStatus.MISMATCH, f"reads-heldout: {res.error}"
        return
    failed = _failed("the held-out score", out, value, err, log_path)
    if failed:
        res.status, res.error = RunStatus.MISMATCH, failed
        return
    res.summary[heldout_store.metric_key(task)] = value
    runfiles.write_fresh(req.run_dir / "heldout.json", json.dumps({heldout_store.metric_key(task): value}))


def _failed(what: str, out: ProcessOutcome, value: float | None, err: str, log_path: Path) -> str:
    """Why a protected scoring process gave no figure, or '' when it gave one."""
    if out.exit_code == 0 and not out.timed_out and value is not None and math.isfinite(value):
        return ""
    how = "timeout" if out.timed_out else f"exit {out.exit_code}"
    return f"{what} failed ({how}{', ' + err if err else ''}); see {log_path}"
