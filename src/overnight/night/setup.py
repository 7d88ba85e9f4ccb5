"""The task's setup step: `[task] setup`, run once before a night's first run.

What every run would otherwise pay inside its clock and its hard timeout goes here: building
the data cache, tokenizing, and a warm-up that fills the compile cache for the baseline's
shape (nanogpt: `python prepare.py --setup`). A cold `torch.compile` took 48-83 s inside a run
on a busy 2-core machine and got the baseline killed at the timeout; after the setup a run
with the baseline's shape finds its kernels cached.

The command is protected (it lives in overnight.toml) and runs in a fresh worktree of the
night's base commit, the user's own code, never a candidate's: it is not sandboxed (it may
download data). It runs on every `overnight run`, resumes included; a warm cache makes it
cheap. Its output goes to `.overnight/<tag>/setup.txt`; a failure stops the night in one line
before any run, since every run would fail the same way.
"""

from __future__ import annotations

import threading
from pathlib import Path

from overnight import gitops
from overnight.errors import OvernightError
from overnight.layout import TagPaths
from overnight.run.environ import task_env
from overnight.run.process import run_process
from overnight.task import TaskSpec


def run_setup(
    task: TaskSpec, commit: str, paths: TagPaths, seed: int, stop: threading.Event | None = None
) -> float | None:
    """Run `task.setup` at `commit`; its wall seconds, or None when the task has none or it was
    stopped (Ctrl-C). Raises OvernightError when it fails or passes `task.setup_timeout`."""
    if not task.setup:
        return None
    paths.folder.mkdir(parents=True, exist_ok=True)
    log_path = paths.setup_log
    worktree = paths.setup_worktree
    # A run's environment without its result file: the same credentials rule, the tag's
    # marker (a killed controller's setup is swept on resume like its runs), the budget.
    env = task_env(task, seed, paths.folder)
    with gitops.worktree(task.root, worktree, commit):
        out = run_process(task.setup, worktree, env, log_path, task.setup_timeout, stop, None, task.limits)
    if out.interrupted:
        return None
    if out.timed_out or out.exit_code != 0:
        why = f"ran past task.setup_timeout ({task.setup_timeout:g} s)" if out.timed_out else f"exit {out.exit_code}"
        last = _last_line(log_path)
        raise OvernightError(
            f"the task's setup command failed ({why}{': ' + last if last else ''}) — see "
            f"{log_path}, fix the task, then run the same command again"
        )
    return out.wall


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""
