"""The harness's side of the held-out slice: where it lives, when it is read, and what a keep
must show on it (`[heldout]` in overnight.toml; the task side is `python -m overnight.heldout`).

Where: `.overnight/heldout/<key>.bin` in the task repository, `key` a digest of the protected
files' hashes (another preset or data spec gets another file). No file of a training run
(train.py, prepare.py, program.md, overnight.toml) and no variable of its environment names
it; a candidate that goes looking can still find it (it is under the same `.overnight/` as
the journal), which is what the watch is for.

When it is opened: once per controller, before the first run is started (`ensure`: built in
a fresh process if missing, into a temporary folder outside the watched one, then renamed into
place), and read into memory then. From there on the harness never opens it: the held-out
score gets the bytes on its stdin from an anonymous memory file (memfd). So while runs are
alive, every open of a file in `.overnight/heldout/` is someone else's, and `watch.py` turns it
into a discarded run (`reads-heldout`). A second controller on the same repository (another
tag) reads it at its start and would flag the first one's runs in flight: run one at a time.

What a keep must show (the held-out rule of night/keep.py): a gain on the held-out slice of at least
`heldout.min_share` times its gain on the metric, less `heldout.max_gap` (gains over its
yardstick, seed for seed over the seeds both have scored, else means of their scored runs).
An honest change helps on documents no run ever saw too, if less surely (the two slices are
different documents); a candidate that fitted the validation tokens gains on them and not
elsewhere, or loses: not kept, flagged `fits-validation`.
"""

from __future__ import annotations

import hashlib
import math
import os
import secrets
import shlex
import shutil
import threading
from pathlib import Path

from overnight import layout
from overnight.errors import OvernightError
from overnight.records import RunStatus
from overnight.run.process import MARKER_VAR, run_process
from overnight.task import Limits, TaskSpec

BUILD_TIMEOUT = 3600.0  # the first build trains the tokenizer and may download data

_loaded: dict[str, bytes] = {}  # store path -> its bytes, read once per process
_lock = threading.Lock()


def store_dir(task: TaskSpec) -> Path:
    return layout.heldout_dir(task.root)


def store_path(task: TaskSpec, protected_hashes: dict[str, str]) -> Path:
    key = hashlib.sha256("".join(f"{p}={h}\n" for p, h in sorted(protected_hashes.items())).encode())
    return store_dir(task) / f"{key.hexdigest()[:16]}.bin"


def hidden_paths(task: TaskSpec) -> list[Path]:
    """What the sandbox leaves out: the held-out store and the task's own `watch` files."""
    paths = [store_dir(task)] if store_dir(task).is_dir() else []
    return paths + [(task.root / w).expanduser() for w in task.watch]


def watched_paths(task: TaskSpec) -> list[Path]:
    """What no run may open: the hidden paths, and each stored file itself (a watch on a file
    follows its inode, so a hard link made elsewhere is seen too; the folder's is not)."""
    store = store_dir(task)
    return hidden_paths(task) + (sorted(p for p in store.iterdir() if p.is_file()) if store.is_dir() else [])


def ensure(task: TaskSpec, base_commit: str, protected_hashes: dict[str, str], say=print) -> Path | None:
    """Build the held-out slice if missing and read it into memory; call before any run starts.
    None when the task has no `[heldout]`."""
    if task.heldout is None:
        return None
    path = store_path(task, protected_hashes)
    with _lock:
        if str(path) in _loaded:
            return path
        if not path.is_file():
            _build(task, base_commit, path, say)
        _loaded[str(path)] = path.read_bytes()
    return path


def _build(task: TaskSpec, base_commit: str, path: Path, say) -> None:
    """`command build OUT` in a folder holding the base commit's protected files, supervised
    as a run's process is (process.py: its own group, killed whole at BUILD_TIMEOUT)."""
    from overnight import gitops

    work = layout.state_dir(task.root) / f"heldout-build-{os.getpid()}"  # outside the watched folder
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        for p in task.protected:  # the base commit's protected files: those every run's hashes match
            data = gitops.read_file(task.root, base_commit, p)
            if data is not None:
                (work / p).parent.mkdir(parents=True, exist_ok=True)
                (work / p).write_bytes(data)
        say(f"building the held-out slice ({task.heldout.command} build), once")
        out, log_path = work / "heldout.bin", work / "build.txt"
        command = shlex.join([*shlex.split(task.heldout.command), "build", str(out)])
        # A marker of its own (what escaped its group is swept); no disk reserve: the build is
        # the user's own code, not a candidate's that may fill the disk.
        env = {**os.environ, **task.env, MARKER_VAR: secrets.token_hex(8)}
        ended = run_process(command, work, env, log_path, BUILD_TIMEOUT, None, None, Limits(disk_reserve_mb=0))
        lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
        if ended.timed_out or ended.exit_code == 127:  # 127: the shell found no such command
            why = f"timed out after {BUILD_TIMEOUT:g} s" if ended.timed_out else (lines or ["not found"])[-1]
            raise OvernightError(f"the held-out build could not run ({why}) — check [heldout] command")
        if ended.exit_code != 0 or not out.is_file():
            tail = "\n".join(lines[-5:])
            raise OvernightError(
                f"the held-out build failed (exit {ended.exit_code}): {tail} — fix the data "
                "or remove [heldout] from overnight.toml"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(out, path)  # a rename: no open of the watched file
        say((lines or ["held-out slice built"])[-1].strip())
    finally:
        shutil.rmtree(work, ignore_errors=True)


def loaded(task: TaskSpec) -> bytes | None:
    """The held-out bytes this process read at `ensure`, if any (none on a Ray worker)."""
    with _lock:
        candidates = [b for p, b in _loaded.items() if Path(p).parent == store_dir(task)]
    return candidates[0] if len(candidates) == 1 else None


def memfd(data: bytes) -> int:
    """A file descriptor of an anonymous in-memory file holding `data`, at offset 0."""
    fd = os.memfd_create("overnight-heldout", os.MFD_CLOEXEC) if hasattr(os, "memfd_create") else None
    if fd is None:  # not Linux: an unlinked temporary file (no name left to find)
        import tempfile

        fd, name = tempfile.mkstemp()
        os.unlink(name)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def metric_key(task: TaskSpec) -> str:
    return f"heldout_{task.metric.name}"


def run_values(task: TaskSpec, run) -> float | None:
    """The run's held-out score as the harness journaled it with the run's re-score (never a
    file in the run directory, which the run could have written), if it has one."""
    if run.status != RunStatus.OK or run.rescored is None:
        return None
    try:
        value = float((run.summary or {})[metric_key(task)])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
