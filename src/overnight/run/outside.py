"""What a run may not change outside its run directory: the files that make other processes
execute code later.

A run executes code a model wrote. Without the sandbox it can write anywhere its user can, and
some places run code in other processes later: the repository's hooks, config and info
(git runs hooks and filters on checkout: the harness's next worktree, the user's next
`git checkout`), git's and Python's configuration in HOME (`~/.gitconfig`'s `core.hooksPath`,
a user-site `.pth`), and the site-packages of the interpreter the runs use (a `.pth` line or a
`sitecustomize` runs at every interpreter start: the protected re-score's included).

`guard(root, command)` snapshots those files once per repository, before the first run; every
run asks `check()` before its checkout and after it ends. A file changed, added or removed is
put back as it was (content and mode), and the runs alive while it happened are invalid
(`since(mark)`). What cannot be put back from a snapshot, a new top-level entry of
site-packages other than a `.pth` or a customize module (a package or module a later import
may find; not `__pycache__`, which Python writes itself), is left where it is, named, and the
night stops (`unrestorable`).

What this does NOT catch: a rewrite in place of an installed package's module deeper in
site-packages (a stat of every file, tens of thousands, would cost each run about a second),
and files elsewhere in HOME (shell start-up files). With `limits.sandbox`, HOME, the
site-packages and the repository are read-only to a run (sandbox.py, docs/threat-model.md).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from overnight.layout import cache_dir

# Site-packages files that run code at every interpreter start; their content is snapshotted.
STARTUP = ("sitecustomize.py", "usercustomize.py")
HOME_FILES = (".gitconfig", ".config/git", ".pydistutils.cfg", ".config/pip", ".pip")
MAX_FILE = 1 << 20  # a config or hook file larger than this is recorded by size and time only


class Outside:
    def __init__(self, git_dir: Path, home: Path, site_dirs: list[Path]):
        self.git_dir, self.home, self.site_dirs = git_dir, home, site_dirs
        self._lock = threading.Lock()
        self.found: list[str] = []  # every change found, in order; a run's mark indexes it
        self.unrestorable: list[str] = []
        self.snapshot = self._read()

    # --- what is watched -------------------------------------------------------------------
    def _files(self) -> list[Path]:
        found = [self.git_dir / "config"]
        for folder in (self.git_dir / "hooks", self.git_dir / "info"):
            found += _walk(folder)
        for name in HOME_FILES:
            found += _walk(self.home / name) if (self.home / name).is_dir() else [self.home / name]
        for site in self.site_dirs:
            found += [site / n for n in _names(site) if n.endswith(".pth") or n in STARTUP]
        return found

    def _read(self) -> dict:
        files = {}
        for p in self._files():
            try:
                st = p.lstat()
                data = p.read_bytes() if st.st_size <= MAX_FILE and p.is_file() else None
            except OSError:
                continue
            files[str(p)] = (data, st.st_mode, st.st_size, st.st_mtime_ns)
        tops = {str(s): sorted(_names(s)) for s in self.site_dirs}
        return {"files": files, "tops": tops}

    # --- the check -------------------------------------------------------------------------
    def mark(self) -> int:
        return len(self.found)

    def since(self, mark: int) -> list[str]:
        return self.found[mark:]

    def check(self) -> list[str]:
        """Compare with the snapshot, put back what changed, and return what did (also kept in
        `found`); a new top-level site-packages entry goes to `unrestorable` instead."""
        with self._lock:
            now, was = self._read(), self.snapshot
            changed = []
            for path, old in was["files"].items():
                cur = now["files"].get(path)
                moved = cur is None or cur[1] != old[1] or cur[2] != old[2]  # a chmod +x of a sample hook too
                if moved or cur[0] != old[0] or (old[0] is None and cur[3] != old[3]):
                    changed.append(f"{path} {'removed' if cur is None else 'changed'}")
                    _put_back(Path(path), old)
            for path in now["files"].keys() - was["files"].keys():
                changed.append(f"{path} written")
                _remove(Path(path))
            # .pth and customize files are put back above; __pycache__ Python itself makes on a first
            # import of a top-level module installed without its bytecode.
            for site, names in now["tops"].items():
                for name in sorted(set(names) - set(was["tops"].get(site, ()))):
                    entry = str(Path(site) / name)
                    if not (name.endswith(".pth") or name in STARTUP or name == "__pycache__"):
                        changed.append(f"{entry} written (left there)")
                        self.unrestorable.append(entry)
            self.found += changed
            return changed


def _walk(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [Path(d) / f for d, _, files in os.walk(folder) for f in files]


def _names(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []


def _put_back(path: Path, old: tuple) -> None:
    data, mode = old[0], old[1]
    if data is None:  # too large to snapshot: it stays changed, and was named
        return
    try:
        if path.is_symlink() or path.is_dir():
            _remove(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chmod(path, mode & 0o7777)
    except OSError:
        pass


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except OSError:
        pass


# --- one guard per repository, made before its first run -----------------------------------
_GUARDS: dict[str, Outside] = {}
_MADE = threading.Lock()


def guard(root: Path, command: str, env: dict | None = None) -> Outside:
    """The guard of repository `root`, its snapshot taken at the first call: the repository's
    git directory, HOME, and the site-packages of both this interpreter and the one the task's
    `command` starts (its first word when that is a python found on the run's PATH)."""
    key = str(Path(root).resolve())
    with _MADE:
        if key not in _GUARDS:
            _GUARDS[key] = Outside(_git_dir(root), Path.home(), site_dirs(command, env))
        return _GUARDS[key]


def existing(root: Path) -> Outside | None:
    """`root`'s guard if a run made one, else None."""
    return _GUARDS.get(str(Path(root).resolve()))


def sandbox_readonly(root: Path) -> list[Path]:
    """What the unshare sandbox makes read-only besides the repository (sandbox.wrap's
    `readonly`): HOME, the data cache wherever OVERNIGHT_CACHE puts it (a module planted there
    for the next run to import), and the git directory and site-packages `root`'s guard watches."""
    guard = existing(root)
    watched = [guard.git_dir, *guard.site_dirs] if guard is not None else []
    return [Path.home(), cache_dir(), *watched]


def forget(root: Path) -> None:
    """Drop `root`'s guard (a test's repository, a night that ended)."""
    _GUARDS.pop(str(Path(root).resolve()), None)


def _git_dir(root: Path) -> Path:
    from overnight import gitops

    out = gitops.git(root, "rev-parse", "--git-common-dir").strip()
    path = Path(out)
    return path if path.is_absolute() else (Path(root) / path).resolve()


def site_dirs(command: str, env: dict | None = None) -> list[Path]:
    """Where this interpreter and the task's find installed packages (site and user site)."""
    found = _site_of(sys.executable)
    try:
        first = shlex.split(command)[0] if command.strip() else ""
    except ValueError:
        first = ""
    exe = shutil.which(first, path=(env or os.environ).get("PATH")) if "python" in Path(first).name else None
    if exe and os.path.abspath(exe) != os.path.abspath(sys.executable):  # a venv's python links to the same binary
        found += _site_of(exe)
    return sorted({Path(p) for p in found if Path(p).is_dir()})


def _site_of(python: str) -> list[str]:
    probe = (
        "import json, site, sysconfig; p = sysconfig.get_paths(); "
        "print(json.dumps([p['purelib'], p['platlib'], *site.getsitepackages(), site.getusersitepackages()]))"
    )
    try:
        out = subprocess.run([python, "-I", "-c", probe], capture_output=True, text=True, timeout=30).stdout
        return [str(p) for p in json.loads(out)]
    except (OSError, subprocess.SubprocessError, ValueError):
        return []
