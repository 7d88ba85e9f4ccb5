"""Git, through the real `git` binary: commits built with plumbing, worktrees, refs.

Candidate commits are built with a private index file (`GIT_INDEX_FILE`), so creating one never
touches the user's working tree, index or HEAD. Each experiment then runs in its own detached
worktree under `.overnight/worktrees/`.

Every git command the harness runs goes through `run_git`: none of the repository's hooks,
none of the user's or the system's git configuration, no filesystem monitor, an explicit
identity and no credentials in its environment. A run may write the repository's hooks or
`~/.gitconfig` (outside the sandbox): nothing it writes there runs inside the harness's git,
which would otherwise execute it with the controller's environment, keys included
(docs/threat-model.md). The repository's own `.git/config` is still git's to read; what a run
changes there is found and undone by run/outside.py.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from overnight.errors import GitError
from overnight.run import credentials

# A fixed identity: candidate commits must be creatable on machines with no git config.
_IDENTITY = {
    "GIT_AUTHOR_NAME": "overnight",
    "GIT_AUTHOR_EMAIL": "overnight@localhost",
    "GIT_COMMITTER_NAME": "overnight",
    "GIT_COMMITTER_EMAIL": "overnight@localhost",
}


# Settings on the command line win over every configuration file: no hooks (the directory
# /dev/null holds none), no fsmonitor command, no pager, no prompt for a password.
SAFE_CONFIG = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "core.pager=cat")


def git_env(env: dict | None = None) -> dict:
    """The environment of the harness's git: the user's less credentials and GIT_* settings,
    with no global or system configuration, the fixed identity, then `env`."""
    base = {
        k: v
        for k, v in credentials.scrub(os.environ, ()).items()
        if not k.startswith("GIT_") or k in ("GIT_EXEC_PATH",)
    }
    return {
        **base,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        **_IDENTITY,
        **(env or {}),
    }


_SAFE_DIRECTORIES: list[str] | None = None


def _safe_directories() -> list[str]:
    """The user's `safe.directory` entries (a repository owned by another user, e.g. a mounted
    volume), read once from their global and system configuration before any run: the one
    setting of theirs the harness's git keeps, passed on its command line."""
    global _SAFE_DIRECTORIES
    if _SAFE_DIRECTORIES is None:
        argv = ["git", "config", "--get-all", "safe.directory"]  # from /: no repository's own config
        out = subprocess.run(argv, capture_output=True, text=True, cwd="/").stdout
        _SAFE_DIRECTORIES = [line for line in out.splitlines() if line.strip()]
    return _SAFE_DIRECTORIES


def run_git(args: list[str], env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    """`git ARGS` as the harness runs it (see the module docstring); subprocess.run's keywords."""
    safe = [a for d in _safe_directories() for a in ("-c", f"safe.directory={d}")]
    return subprocess.run(["git", *SAFE_CONFIG, *safe, *args], env=git_env(env), **kw)


def git(repo: Path, *args: str, input: str | bytes | None = None, env: dict | None = None, check: bool = True) -> str:
    data = input.encode() if isinstance(input, str) else input
    proc = run_git(["-C", str(repo), *args], env=env, input=data, capture_output=True)
    if check and proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        if any("No space left on device" in line for line in msg):
            raise GitError(
                f"git {' '.join(args[:2])} failed: the disk of {repo} is full — free space there, then resume "
                "with the same command (nothing decided is lost)"
            )
        raise GitError(f"git {' '.join(args[:2])} failed: {msg[-1] if msg else proc.returncode}")
    return proc.stdout.decode(errors="replace")


def is_repo(path: Path) -> bool:
    return run_git(["-C", str(path), "rev-parse", "--git-dir"], capture_output=True).returncode == 0


def toplevel(path: Path) -> Path:
    if not is_repo(path):
        raise GitError(
            f"{path} is not a git repository — run `git init` there and commit the task, or use `overnight init`"
        )
    return Path(git(path, "rev-parse", "--show-toplevel").strip())


def rev_parse(repo: Path, rev: str) -> str | None:
    out = git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False).strip()
    return out or None


def trees(repo: Path, commits: list[str]) -> dict[str, str]:
    """Each commit's tree hash, in one git call: two commits with one tree hold the same files."""
    if not commits:
        return {}
    out = git(repo, "rev-parse", *(f"{c}^{{tree}}" for c in commits)).split()
    return dict(zip(commits, out, strict=True))


def head(repo: Path) -> str:
    sha = rev_parse(repo, "HEAD")
    if sha is None:
        raise GitError(f"{repo} has no commits — commit the task files first (git add -A && git commit)")
    return sha


def dirty_files(repo: Path, paths: tuple[str, ...]) -> list[str]:
    """Tracked files among `paths` with uncommitted changes (the run starts from HEAD, not them)."""
    out = git(repo, "status", "--porcelain", "--", *paths)
    return [line[3:] for line in out.splitlines() if line.strip()]


def read_file(repo: Path, commit: str, path: str) -> bytes | None:
    proc = run_git(["-C", str(repo), "show", f"{commit}:{path}"], capture_output=True)
    return proc.stdout if proc.returncode == 0 else None


def read_files(repo: Path, commit: str, paths: tuple[str, ...] | list[str]) -> dict[str, str]:
    out = {}
    for p in paths:
        data = read_file(repo, commit, p)
        if data is not None:
            out[p] = data.decode(errors="replace")
    return out


def make_commit(repo: Path, parent: str, edits: dict[str, str], message: str) -> str:
    """A commit whose tree is `parent`'s with `edits` (path -> new text) applied; returns its sha.

    Built with a throwaway index, so nothing the user sees changes until a ref moves.
    """
    with tempfile.TemporaryDirectory(prefix="overnight-index-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        git(repo, "read-tree", parent, env=env)
        for path, text in edits.items():
            blob = git(repo, "hash-object", "-w", "--stdin", input=text).strip()
            mode = "100755" if _is_executable(repo, parent, path) else "100644"
            git(repo, "update-index", "--add", "--cacheinfo", f"{mode},{blob},{path}", env=env)
        tree = git(repo, "write-tree", env=env).strip()
    return git(repo, "commit-tree", tree, "-p", parent, input=message).strip()


def revert_onto(repo: Path, commit: str, patch: str, message: str) -> str | None:
    """A commit on top of `commit` with `patch` reverse-applied, or None if it does not apply."""
    with tempfile.TemporaryDirectory(prefix="overnight-index-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        git(repo, "read-tree", commit, env=env)
        patch_file = Path(tmp) / "change.patch"
        patch_file.write_text(patch)
        proc = run_git(["-C", str(repo), "apply", "--cached", "-R", str(patch_file)], env=env, capture_output=True)
        if proc.returncode != 0:
            return None
        tree = git(repo, "write-tree", env=env).strip()
    return git(repo, "commit-tree", tree, "-p", commit, input=message).strip()


def merge_edits(repo: Path, old_base: str, new_base: str, edits: dict[str, str]) -> dict[str, str]:
    """`edits` (full texts written on top of `old_base`) carried onto `new_base` by a three-way
    line merge per file (`merge3`). Files the edits did not touch stay `new_base`'s."""
    out = {}
    for path, text in edits.items():
        ours = (read_file(repo, new_base, path) or b"").decode(errors="replace")
        base = (read_file(repo, old_base, path) or b"").decode(errors="replace")
        out[path] = merge3(base, ours, text)
    return out


def merge3(base: str, ours: str, theirs: str) -> str:
    """Three-way merge by lines. Changes to different lines both apply, neighbouring ones
    included (git would call those a conflict). Where both sides changed the same lines,
    `theirs` wins: it is the candidate's idea (e.g. a new value of a constant both touched),
    and the merged file is measured before anything is kept."""
    b, o, t = (x.splitlines(keepends=True) for x in (base, ours, theirs))

    def hunks(side: list[str], who: str) -> list[tuple[int, int, list[str], str]]:
        ops = difflib.SequenceMatcher(None, b, side, autojunk=False).get_opcodes()
        return [(i1, i2, side[j1:j2], who) for tag, i1, i2, j1, j2 in ops if tag != "equal"]

    def clash(a, c) -> bool:  # same base lines, or an insertion at or inside the other's range
        if a[0] == a[1] or c[0] == c[1]:
            return a[0] == c[0] or a[0] < c[0] < a[1] or c[0] < a[0] < c[1]
        return max(a[0], c[0]) < min(a[1], c[1])

    groups: list[list[tuple]] = []
    for h in sorted(hunks(o, "o") + hunks(t, "t"), key=lambda h: (h[0], h[1])):
        if groups and any(clash(g, h) for g in groups[-1]):
            groups[-1].append(h)
        else:
            groups.append([h])
    out, pos = [], 0
    for g in groups:
        lo, hi = min(h[0] for h in g), max(h[1] for h in g)
        winner = "t" if any(h[3] == "t" for h in g) else "o"
        out += b[pos:lo]
        p = lo
        for i1, i2, lines, who in g:
            if who == winner:
                out += b[p:i1] + lines
                p = i2
        out += b[p:hi]
        pos = hi
    return "".join(out + b[pos:])


def _is_executable(repo: Path, commit: str, path: str) -> bool:
    out = git(repo, "ls-tree", commit, "--", path, check=False).split()
    return bool(out) and out[0] == "100755"


def changed_paths(repo: Path, a: str, b: str) -> list[str]:
    return [p for p in git(repo, "diff", "--name-only", a, b).splitlines() if p]


def diff(repo: Path, a: str, b: str) -> str:
    return git(repo, "diff", a, b)


def update_ref(repo: Path, ref: str, sha: str, old: str | None = None) -> None:
    """Point `ref` at `sha`; with `old`, only if it is at `old` now ("": only if it does not
    exist), atomically (git checks under the ref's lock), else GitError."""
    git(repo, "update-ref", ref, sha, *(() if old is None else (old,)))


# Slots and the re-score thread add and remove worktrees at once; `git worktree prune` in one
# thread reads a worktree another is still creating ("failed to read .git/worktrees/X/commondir")
# and may delete it. One lock per process serialises them (each takes ~15 ms).
_WORKTREES = threading.RLock()


def worktree_add(repo: Path, path: Path, commit: str) -> None:
    with _WORKTREES:
        if path.exists():  # left over by a killed controller
            worktree_remove(repo, path)
        git(repo, "worktree", "add", "--detach", "--force", str(path), commit)
        # Verified clean before any process starts in it: nothing but the commit's files, whatever
        # the checkout ran (a filter of the repository's own config) or left behind.
        clean_worktree(path)


@contextlib.contextmanager
def worktree(repo: Path, path: Path, commit: str) -> Iterator[Path]:
    """A worktree of `commit` at `path` for the length of the block, removed after it however
    the block ends (a run, a re-score, the task's setup)."""
    worktree_add(repo, path, commit)
    try:
        yield path
    finally:
        worktree_remove(repo, path)


def worktree_remove(repo: Path, path: Path) -> None:
    with _WORKTREES:
        git(repo, "worktree", "remove", "--force", str(path), check=False)
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
        git(repo, "worktree", "prune", check=False)


def clean_worktree(path: Path) -> list[str]:
    """Put worktree `path` back to its commit's files: every untracked or ignored file removed
    (a module, a `__pycache__` a run left for the next process to import), every tracked one as
    committed. Returns what was not the commit's."""
    left = git(path, "status", "--porcelain", "--ignored", "--untracked-files=all").splitlines()
    if left:
        git(path, "checkout", "--force", "HEAD", "--", ".", check=False)
        git(path, "clean", "-ffdxq")
    return [line[3:] for line in left]


def ignore_locally(repo: Path, pattern: str) -> None:
    """Add `pattern` to .git/info/exclude (never to the user's tracked .gitignore)."""
    exclude = Path(git(repo, "rev-parse", "--git-path", "info/exclude").strip())
    if not exclude.is_absolute():
        exclude = repo / exclude
    exclude.parent.mkdir(parents=True, exist_ok=True)
    lines = exclude.read_text().splitlines() if exclude.exists() else []
    if pattern not in lines:
        exclude.write_text("\n".join(lines + [pattern]) + "\n")


def init_repo(path: Path, message: str) -> str:
    """git init + commit everything in `path`; returns the commit."""
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", message)
    return head(path)
