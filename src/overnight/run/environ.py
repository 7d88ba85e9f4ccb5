"""What a process of the task starts with: its environment (`task_env` for any, `run_env` for
a run and its re-score, `clock_env` for the budget's clock), its confinement (`confine`: the
sandbox, run/sandbox.py, with the task's writable directories) and the protected files it must
find (`protected_hashes` at the tag's base commit, `protected_changed` in a worktree).

One module for the run (execute.py) and the scores after it (scoring.py) alike, so the two
start their processes the same way.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from overnight import gitops, layout
from overnight.records import RunRequest
from overnight.run import credentials, heldout_store, outside, sandbox
from overnight.run.process import MARKER_VAR, TAG_MARKER_VAR, tag_mark
from overnight.task import TaskSpec, file_hash


def protected_hashes(task: TaskSpec, commit: str) -> dict[str, str]:
    """The hashes every run's protected files must match: those of the tag's base commit."""
    return {p: file_hash(gitops.read_file(task.root, commit, p) or b"") for p in task.protected}


def protected_changed(req: RunRequest) -> list[str]:
    """The protected files of `req.worktree` that are missing or differ from the task's."""
    return [
        p
        for p, h in req.protected_hashes.items()
        if not (req.worktree / p).is_file() or file_hash((req.worktree / p).read_bytes()) != h
    ]


def clock_env(clock: str) -> dict[str, str]:
    """What a run under `[task] clock` needs besides OVERNIGHT_CLOCK (a `[task.env]` entry wins).

    Under the cpu clock, OpenMP threads that wait for work sleep instead of spinning
    (OMP_WAIT_POLICY=PASSIVE): a spinning thread burns CPU time without work, and under load,
    waiting at a barrier for a thread the scheduler took away, it ran the clock fast (nanogpt's
    cpu preset, 10 s: 11-18 steps beside a competing process, 20-39 without; passive: 43-49 and
    36-49; docs/task-spec.md). Under the steps and tokens clocks they spin (ACTIVE): a step is
    timed as its wall time less the time its threads waited for a CPU, which a spinning thread
    does in the run queue where it is seen, and passive threads cost 1.5x the wall time on a
    quiet machine (nanogpt cpu preset, 2 cores: 208 vs 135 ms a step), while the default's
    spin-then-sleep ran 18x slower beside one competing process (2,430 ms a step; ACTIVE 438)."""
    if clock == "cpu":
        return {"OMP_WAIT_POLICY": "PASSIVE"}
    return {"OMP_WAIT_POLICY": "ACTIVE"} if clock in ("steps", "tokens") else {}


def task_env(task: TaskSpec, seed: int, tag_dir: Path | None, extra: dict | None = None) -> dict:
    """The environment of a process of the task's (a run, its re-score, the task's setup): the
    user's credentials withheld unless `[task] pass_env` names them (credentials.py), `extra`
    (a slot's pinning), the budget, its clock and the seed, a fresh run marker and the tag's marker."""
    return {
        "OVERNIGHT_CACHE": str(layout.cache_dir()),  # resolved, as `$OVERNIGHT_CACHE` in sandbox_writable is
        **credentials.scrub(os.environ, task.pass_env),
        **clock_env(task.clock),
        **task.env,
        **(extra or {}),
        "OVERNIGHT_BUDGET": f"{task.budget:g}",
        "OVERNIGHT_CLOCK": task.clock,
        "OVERNIGHT_SEED": str(seed),
        "PYTHONUNBUFFERED": "1",
        "PYTHONNOUSERSITE": "1",  # nothing from the user's site-packages, which a run could write
        MARKER_VAR: secrets.token_hex(8),
        TAG_MARKER_VAR: tag_mark(tag_dir) if tag_dir is not None else "",
    }


def run_env(task: TaskSpec, req: RunRequest, result_path: Path) -> dict:
    """The run's environment; the deferred re-score rebuilds the same one (a fresh marker)."""
    # A night's run directory is <root>/.overnight/<tag>/runs/<exp>-<run>.
    tag_dir = layout.tag_of_run_dir(req.run_dir)  # None outside a night's runs (verify)
    costs = {"OVERNIGHT_COST": req.cost, "OVERNIGHT_COST_REF": req.cost_ref}
    return {
        **task_env(task, req.seed, tag_dir, req.extra_env),
        **{name: repr(float(v)) for name, v in costs.items() if v is not None},
        "OVERNIGHT_RESULT": str(result_path),
    }


def confine(task: TaskSpec, command: str, writable: list[Path], log: bool = True) -> tuple[str, str, str]:
    """(`command` as run, the sandbox that wraps it or '', why it cannot run or '') under
    `limits.sandbox`: writable only `writable` and `limits.sandbox_writable` (made if missing),
    the held-out data hidden, HOME and the site-packages read-only (unshare; bwrap: everything)."""
    which, why = sandbox.choose(task.limits.sandbox)
    if not which:
        return command, "", why
    extra = [sandbox_dir(w) for w in task.limits.sandbox_writable]
    for w in extra:
        w.mkdir(parents=True, exist_ok=True)  # a bind needs it (a compile cache not made yet)
    wrapped = sandbox.wrap(
        command,
        task.root,
        [*writable, *extra],
        hidden=heldout_store.hidden_paths(task),
        log=log,
        readonly=outside.sandbox_readonly(task.root),
        which=which,
    )
    return wrapped, which, ""


def sandbox_dir(entry: str) -> Path:
    """A `limits.sandbox_writable` entry as a path: `$OVERNIGHT_CACHE` (resolved as the run's
    OVERNIGHT_CACHE is), other variables and `~` expanded."""
    text = entry.replace("${OVERNIGHT_CACHE}", "$OVERNIGHT_CACHE").replace("$OVERNIGHT_CACHE", str(layout.cache_dir()))
    return Path(os.path.expandvars(text)).expanduser()
