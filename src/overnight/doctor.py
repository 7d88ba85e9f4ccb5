"""`overnight doctor`: can this machine run a night of the task in DIR, and how well?

One Check per question, printed as one line: ok, info, warn (the night runs, but slower or
less guarded) or FAIL (it cannot run: the start, or every run, would fail). This module holds
the Check type, `checks` (every check, in order), and the cheap checks: git, the task, free
disk, inotify, the sandbox. `fatal_problems` is the cheap subset `overnight run` asks before the
baseline: git, free disk, and the sandbox when the task asks for one. It never imports torch
(the controller process does not); the rest (torch, the precision the task will train in, a C++
compiler, Ray, the LLM endpoint) is in doctor_probes.py, for `overnight doctor` only.

What it does not promise: that a run succeeds. It checks the machine and the task's files,
not the candidate's code, and a GPU free now may be taken when the night starts.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from overnight import gitops
from overnight.doctor_check import FAIL, INFO, OK, WARN, Check, first_line
from overnight.errors import OvernightError
from overnight.layout import cache_dir, state_dir
from overnight.proposers.options import ProposerOptions
from overnight.run import sandbox, watch
from overnight.task import TaskSpec
from overnight.task_load import load_task

# Free disk, GiB: below MIN_FREE_GB (or $OVERNIGHT_MIN_FREE_GB) a night does not start, its journal,
# worktrees and logs would fill the disk within hours; below LOW_FREE_GB (or that floor) a warning.
MIN_FREE_GB = 1.0
LOW_FREE_GB = 5.0  # a tokenized corpus plus a night of logs takes a few GiB


def fatal_problems(directory: Path) -> list[str]:
    """What stops any night here, one `what — what to do` each; [] when none. Cheap and
    torch-free. A task that does not load is left to the controller's own one-line error."""
    git = _git()
    if git.level is FAIL:  # without git there is no repository to look at
        return [git.text]
    root = _root(directory)
    try:
        mode = load_task(root).limits.sandbox
    except OvernightError:
        mode = "auto"
    found = [*_disks(root), *([_sandbox(mode)] if mode == "on" else [])]
    return [c.text for c in found if c.level is FAIL]


def checks(
    directory: Path, ray: bool = False, ray_address: str | None = None, llm: ProposerOptions | None = None
) -> Iterator[Check]:
    """Every check, in the order printed; a generator, so slow ones (torch) show progress."""
    yield Check(INFO, "python", f"{platform.python_version()} ({sys.executable})")
    git = _git()
    yield git
    task_check, root, task = _task(directory, has_git=git.level is not FAIL)
    yield task_check
    from overnight import doctor_probes as probes  # here: `overnight run` needs none of them

    yield probes.compiler_check()
    torch_check, torch = probes.torch_check()
    yield torch_check
    yield probes.precision_check(root, task, torch)
    yield from _disks(root)
    why = watch.available()
    yield (
        Check(WARN, "inotify", why, "runs go on, but the held-out data is not watched (Linux with inotify watches it)")
        if why
        else Check(OK, "inotify", "works: a run that opens the held-out data is discarded")
    )
    yield _sandbox(task.limits.sandbox if task is not None else "auto")
    if task is not None and task.clock in ("steps", "tokens"):
        yield _runqueue_check(task.clock)
    if ray or ray_address:
        yield probes.ray_check(ray_address)
    if llm is not None and llm.base_url:
        yield probes.llm_check(llm)


def _runqueue_check(clock: str) -> Check:
    """The steps and tokens clocks time a step as its wall time less the time its threads
    waited for a CPU others held (Linux schedstat); where that is not readable they time the
    wall, and a loaded machine's load is charged to the run."""
    try:
        fields = Path(f"/proc/self/task/{os.getpid()}/schedstat").read_text().split()
        int(fields[1])
    except (OSError, ValueError, IndexError):
        return Check(
            WARN,
            "clock",
            f"the {clock} clock cannot read run-queue waits here (no /proc/<pid>/task/<tid>/schedstat)",
            "it times the wall instead: keep the machine quiet during a night",
        )
    return Check(OK, "clock", f"the {clock} clock reads run-queue waits: others' load is not charged to a run")


def _root(directory: Path) -> Path:
    path = Path(directory).resolve()
    return gitops.toplevel(path) if gitops.is_repo(path) else path


def _git() -> Check:
    exe = shutil.which("git")
    if exe is None:
        return Check(
            FAIL,
            "git",
            "not found on PATH",
            "install git (apt install git): each experiment is a git commit, run in its own worktree",
        )
    version = first_line([exe, "--version"])
    return Check(OK, "git", version) if version else Check(FAIL, "git", f"{exe} --version fails", "reinstall git")


def _task(directory: Path, has_git: bool) -> tuple[Check, Path, TaskSpec | None]:
    root = Path(directory).resolve()
    if has_git and not gitops.is_repo(root):
        return (
            Check(
                FAIL,
                "task",
                f"{root} is not a git repository",
                f"`overnight init {directory}` writes a built-in task there; for your own, `git init` and commit it",
            ),
            root,
            None,
        )
    root = _root(root) if has_git else root
    try:
        task = load_task(root)
        if has_git:  # runs check out HEAD: a file on disk but not committed is not in any run
            head = gitops.head(root)
            missing = [p for p in task.editable + task.protected if gitops.read_file(root, head, p) is None]
            if missing:
                raise OvernightError(
                    f"{', '.join(missing)} named in overnight.toml not committed — commit "
                    "them (git add, git commit): runs check out HEAD only"
                )
    except OvernightError as exc:  # the loader's messages say what to do already
        return Check(FAIL, "task", str(exc)), root, None
    detail = (
        f"{root}: `{task.command}`, editable {', '.join(task.editable)}, {task.metric.goal} "
        f"{task.metric.name}, budget {task.budget:g} s"
    )
    return Check(OK, "task", detail + ("" if has_git else " (git missing: commits not checked)")), root, task


def _disks(root: Path) -> Iterator[Check]:
    given = os.environ.get("OVERNIGHT_MIN_FREE_GB", "").strip()
    try:
        floor = float(given) if given else MIN_FREE_GB
    except ValueError:
        raise OvernightError(
            f"OVERNIGHT_MIN_FREE_GB={given!r} is not a number — give GiB, e.g. 1, or unset it"
        ) from None
    low = max(LOW_FREE_GB, floor)
    for name, path, fix in (
        ("disk (journal)", state_dir(root), "free some space there"),
        ("disk (data cache)", cache_dir(), "free some space, or point OVERNIGHT_CACHE elsewhere"),
    ):
        near = path
        while not near.exists() and near != near.parent:  # not made yet: the disk it will be on
            near = near.parent
        free = shutil.disk_usage(near).free / 2**30
        detail = f"{free:.1f} GiB free at {path}"
        yield (
            Check(FAIL, name, f"{detail}, under {floor:g} GiB", fix)
            if free < floor
            else Check(WARN, name, f"{detail}, under {low:g} GiB", fix + " before a long night")
            if free < low
            else Check(OK, name, detail)
        )


def _sandbox(mode: str) -> Check:
    """Whether the runs are sandboxed here under `limits.sandbox` = `mode` (run/sandbox.py)."""
    why = sandbox.unavailable()  # says what to do itself, after its ' — '
    if not why:
        if mode == "off":
            return Check(INFO, "sandbox", f"{sandbox.tool()} works, but limits.sandbox is off: runs are not sandboxed")
        which = sandbox.choose(mode)[0] or sandbox.tool()  # auto takes unshare before bwrap (sandbox.py)
        return Check(OK, "sandbox", f"{which} works: every run is sandboxed (limits.sandbox is {mode})")
    if mode == "on":  # every run would fail with this reason (run/execute.py)
        return Check(
            FAIL, "sandbox", f"limits.sandbox is on, but no sandbox works here ({why.replace(' — ', ') — ', 1)}"
        )
    if mode == "off":
        return Check(INFO, "sandbox", f"none works here (limits.sandbox is off: not needed): {why.split(' — ')[0]}")
    return Check(
        WARN,
        "sandbox",
        f"none works here, runs are not sandboxed ({why.split(' — ')[0]})",
        why.split(" — ", 1)[-1].replace(", or set limits.sandbox = false", "")
        + " (docs/threat-model.md says what the guard still catches)",
    )
