"""Git as the tests read it: plain `git` output, the user's checkout, and refs that agree
with the journal after a night (the harness's own plumbing is what is under test, so these
read git directly)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from overnight import gitops
from overnight.records import ExpStatus, RunStatus

RUN_STATUSES = {"ok", "interrupted", "crash", "invalid", "timeout"}


def git_out(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def user_state(root: Path) -> dict:
    """Everything of the user's checkout the harness must not touch."""
    return {
        "head": git_out(root, "rev-parse", "HEAD"),
        "branch": git_out(root, "symbolic-ref", "HEAD"),
        "status": git_out(root, "status", "--porcelain", "--untracked-files=all"),
        "index": git_out(root, "ls-files", "-s"),
        "files": {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()},
    }


def check_git_consistent(root: Path, tag: str, history) -> None:
    """Refs, branch and ancestry agree with the journal."""
    base = history[0].commit_sha
    for e in history:
        if e.commit_sha is not None:
            assert gitops.rev_parse(root, f"refs/overnight/{tag}/{e.id}") == e.commit_sha
    kept = [e for e in history if e.status == ExpStatus.KEPT]
    incumbent = max(kept, key=lambda e: (e.decided, e.id))
    assert gitops.rev_parse(root, f"overnight/{tag}") == incumbent.commit_sha
    # The branch holds kept commits only, newest first, on top of where the night started.
    on_branch = git_out(root, "rev-list", f"overnight/{tag}", f"^{base}").split()
    kept_changes = sorted((e for e in kept if e.parent_id is not None), key=lambda e: (e.decided, e.id))
    assert on_branch == [e.commit_sha for e in reversed(kept_changes)]
    # Worktrees are all gone.
    assert len(git_out(root, "worktree", "list").splitlines()) == 1
    leftovers = root / ".overnight" / "worktrees"
    assert not leftovers.exists() or not any(leftovers.iterdir())


def check_consistent(root: Path, tag: str, history) -> None:
    """A finished night: every experiment decided, no seed counted twice, git agreeing."""
    assert all(e.status.final for e in history), [(e.id, e.status) for e in history]
    for e in history:
        assert {r.status for r in e.runs} <= RUN_STATUSES
        ok = [r for r in e.runs if r.status == RunStatus.OK]
        assert len({r.seed for r in ok}) == len(ok), (e.id, [r.seed for r in ok])  # no seed twice
    check_git_consistent(root, tag, history)
