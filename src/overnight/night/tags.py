"""Tags and their locks: a tag names one night (the branch overnight/<tag>), its journal rows
and its folder under `.overnight/`; one controller per tag at a time."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from datetime import date
from pathlib import Path

from overnight import gitops, layout
from overnight.errors import OvernightError
from overnight.journal import Journal


def state_folder(root: Path) -> Path:
    """.overnight/ of `root`, refused in one line when a file holds that name."""
    state = layout.state_dir(root)
    if state.exists() and not state.is_dir():
        raise OvernightError(
            f"{state} is a file, but overnight keeps its journal in a folder of that name — move the file away"
        )
    return state


def open_journal(root: Path) -> Journal:
    path = state_folder(root) / layout.JOURNAL
    try:
        return Journal(path)
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError):  # locked, disk full: not the file's fault
            raise
        raise OvernightError(
            f"the journal {path} is damaged ({exc}) — move it aside and start a new night, or restore it from a backup"
        ) from None


MAX_TAG = 64


def check_tag(tag: str) -> str:
    """A tag names the branch overnight/<tag>: letters, digits, '-', '_', '.', and a valid git ref."""
    if len(tag) > MAX_TAG:  # it names folders and files too: a file name has a limit
        raise OvernightError(f"tag {tag[:20]!r}... is {len(tag)} characters long — pick a --tag of at most {MAX_TAG}")
    if not tag or not all(c.isalnum() or c in "-_." for c in tag):
        raise OvernightError(f"tag {tag!r} may only hold letters, digits, '-', '_' and '.' — pick another --tag")
    ok = gitops.run_git(["check-ref-format", f"refs/heads/overnight/{tag}"], capture_output=True).returncode == 0
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
