"""The sandbox of a run (Linux): what the machine offers. `limits.sandbox = "auto"` (the
default) sandboxes every run where one works here (`overnight doctor` says which), `true`
fails each run where none does, `false` never sandboxes.

Two tools, `true` taking bwrap first and "auto" unshare first (STRICT_FIRST, LENIENT_FIRST).
`bwrap` (bubblewrap): the whole file system read-only,
a private tmpfs on /tmp (the scratch dir), writable only the run's worktree and run directory
(and `limits.sandbox_writable`, e.g. a compile cache), the held-out data not there at all (an
empty tmpfs over its folder, /dev/null over a watched file), no network, its own PID namespace,
killed with its parent. `unshare` (util-linux) with user, mount, network and PID
namespaces (its own /proc): no network, the task repository, its git directory, HOME, the data
cache and the interpreter's site-packages read-only except the same writable directories, the
held-out folder covered by an empty tmpfs; writes elsewhere (/tmp) stay possible. In both, every
process of the run dies with the namespace's first process: one that detaches (setsid, a
cleared environment) cannot outlive the run, and the run sees no process outside it (not its
reaper, not the controller's environment).
`OVERNIGHT_SANDBOX=unshare|bwrap` picks one (tests use it to exercise both); `off` makes
"auto" run unsandboxed, as on a machine without one.

Neither is a security boundary against a determined attacker with a kernel exploit; both keep
a candidate from the journal, the protected files, the held-out slice and the network.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

# unshare's namespaces: --pid --fork --mount-proc give the run its own PID 1 and /proc, so
# nothing of it outlives the run, and it sees no process outside it.
UNSHARE = ("--user", "--map-root-user", "--net", "--mount", "--pid", "--fork", "--mount-proc")

# The first line of a sandboxed run's log (stderr): the harness's, so left out of the tail a
# crash's reason quotes (run/outcome.py).
NOTE = "[overnight] sandbox: "

_CHECKED: dict[tuple, str] = {}  # (tool, its path) -> '' (works) or why not


# The system read-only, fresh /dev, /proc and /tmp; then no network, its own pids, and gone
# with its parent. The probe (_works) runs the same flags as a run's wrap, so what it finds
# working is what runs.
BWRAP_SYSTEM = ("bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp")
BWRAP_ISOLATION = ("--unshare-net", "--unshare-pid", "--die-with-parent")


def _try(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{argv[0]} failed ({exc})"
    return "" if r.returncode == 0 else f"{argv[0]} failed ({r.stderr.strip() or r.returncode}); user namespaces off?"


def _works(tool: str) -> str:
    key = (tool, shutil.which(tool))
    if key not in _CHECKED:
        if not sys.platform.startswith("linux"):
            _CHECKED[key] = "needs Linux"
        elif key[1] is None:
            _CHECKED[key] = f"`{tool}` is not installed"
        elif tool == "bwrap":
            _CHECKED[key] = _try([*BWRAP_SYSTEM, *BWRAP_ISOLATION, "true"])
        else:
            _CHECKED[key] = _try(["unshare", *UNSHARE, "true"])
    return _CHECKED[key]


# `limits.sandbox = true` asks for the strictest that works; "auto" (the default) for the one
# that changes least of what a task may rely on: unshare leaves /tmp and the rest of the file
# system as they are (the repository, HOME, the data cache and the site-packages read-only),
# bwrap makes everything read-only and /tmp private, which hides a task's data kept under /tmp.
STRICT_FIRST = ("bwrap", "unshare")
LENIENT_FIRST = ("unshare", "bwrap")


def tool(order: tuple[str, ...] = STRICT_FIRST) -> str:
    """'bwrap' or 'unshare', the first in `order` that works here (OVERNIGHT_SANDBOX picks one),
    or '' for neither."""
    forced = os.environ.get("OVERNIGHT_SANDBOX", "")
    for t in [forced] if forced in ("bwrap", "unshare") else order:
        if not _works(t):
            return t
    return ""


def unavailable() -> str:
    """'' when a sandbox can be made here, else why neither works."""
    if tool():
        return ""
    forced = os.environ.get("OVERNIGHT_SANDBOX", "")
    tools = [forced] if forced in ("bwrap", "unshare") else ["bwrap", "unshare"]
    return (
        "; ".join(f"{t}: {_works(t)}" for t in tools) + " — install bubblewrap (`apt install bubblewrap`) "
        "or allow unprivileged user namespaces, or set limits.sandbox = false"
    )


def choose(mode: str) -> tuple[str, str]:
    """(the tool that sandboxes a run, why the run cannot go on) under `limits.sandbox` = `mode`:
    "on" and none works here -> ('', the reason); "auto" -> the tool, or '' where none works."""
    if mode == "off" or (mode == "auto" and os.environ.get("OVERNIGHT_SANDBOX") == "off"):
        return "", ""
    which = tool(LENIENT_FIRST if mode == "auto" else STRICT_FIRST)
    if which or mode == "auto":
        return which, ""
    return "", f"limits.sandbox is on but unavailable here: {unavailable()}"


def wrap(
    command: str,
    root: Path,
    writable: list[Path],
    hidden: list[Path] = (),
    log: bool = True,
    readonly: list[Path] = (),
    which: str = "",
) -> str:
    """`command` inside the sandbox (see the module docstring); raises nothing: call
    `unavailable()` first. `readonly`: more directories unshare makes read-only besides the
    repository (HOME, the interpreter's site-packages: bwrap's whole file system is). `which`:
    the tool (choose's), else the strictest that works."""
    q = lambda p: shlex.quote(str(p))
    which = which or tool()
    hidden = [Path(h) for h in hidden if Path(h).exists()]
    note = (
        (
            f"echo '{NOTE}{which} (no network; writable: worktree, run dir"
            f"{', private /tmp' if which == 'bwrap' else ''}; held-out data hidden; more with "
            "limits.sandbox_writable, none with limits.sandbox = false)' >&2; "
        )
        if log
        else ""
    )
    if which == "bwrap":
        args = [*BWRAP_SYSTEM, "--ro-bind", str(root), str(root)]  # the repository again, in case it is under /tmp
        for keep in _python_under_tmp():  # a venv or checkout under /tmp: the run's python needs it
            args += ["--ro-bind", keep, keep]
        for w in writable:
            args += ["--bind", str(w), str(w)]
        for h in hidden:
            args += ["--tmpfs", str(h)] if h.is_dir() else ["--ro-bind", "/dev/null", str(h)]
        args += BWRAP_ISOLATION
        inner = f"{note}exec /bin/sh -c {q(command)}"
        return "exec " + " ".join(q(a) for a in args) + ' --chdir "$(pwd)" /bin/sh -c ' + q(inner)
    # Read-only ones bound first, the shorter path first (a repository under HOME stays its own
    # mount), the writable ones on top while all are still writable (a bind copies its source's
    # flags), then the first made read-only.
    ro = sorted({Path(root), *(Path(r) for r in readonly if Path(r).is_dir())}, key=lambda p: len(str(p)))
    mounts = [f"mount --bind {q(r)} {q(r)}" for r in ro]
    mounts += [f"mount --bind {q(w)} {q(w)}" for w in writable]
    mounts += [f"mount -o remount,bind,ro {q(r)}" for r in ro]
    mounts += [
        f"mount -t tmpfs -o ro,size=1k none {q(h)}" if h.is_dir() else f"mount --bind /dev/null {q(h)}" for h in hidden
    ]
    script = " && ".join(mounts) + f' && {note}exec /bin/sh -c "$0"'
    return f"exec unshare {' '.join(UNSHARE)} /bin/sh -c {q(script)} {q(command)}"


def _python_under_tmp() -> list[str]:
    """The running Python's prefixes and import paths that the private /tmp would hide."""
    found = []
    for p in [sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable)), *sys.path]:
        p = os.path.realpath(p) if p else ""
        if (
            (p == "/tmp" or p.startswith("/tmp/"))
            and os.path.isdir(p)
            and not any(p == f or p.startswith(f + "/") for f in found)
        ):
            found.append(p)
    return sorted(found, key=len)
