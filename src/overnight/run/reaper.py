"""The run's reaper: a tiny parent that no descendant of the candidate can escape (Linux).

    python reaper.py [--parent PID] COMMAND...     (run as a script: stdlib only, no package import)

It marks itself a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so every process the
candidate starts, including one that double-forks or calls setsid() to leave the process
group, is re-parented to it rather than to init when its parent dies. When the command ends
(or the runner sends SIGTERM at the hard timeout) it kills all its remaining descendants with
SIGKILL, reaps them, and exits with the command's status (a signal death is re-raised).

It dies with its controller and takes the run with it: with `--parent PID` (the runner passes
its own pid) it checks getppid() before starting the command (the controller may have died
between the fork and here: then it exits without running anything) and on every turn of its
wait loop (~20 ms); once the parent is gone (a kill -9 of `overnight run`: we are re-parented
to init or a subreaper) it sweeps every descendant and exits. Not PR_SET_PDEATHSIG: that
signal fires when the parent *thread* exits, and runs are started from the controller's slot
threads, so a thread ending would kill a run whose controller is alive (checked: a child of a
thread that ends gets the signal while the process lives on); getppid() names the parent
process, whichever of its threads is left, and a 20 ms poll is as quick as the night needs.

What this does NOT catch: a process that something outside the tree starts for the candidate
(e.g. a systemd-run or an `at` job), or a descendant that itself becomes a subreaper and
hides below one we kill (it dies with its parent's tree only if we find it: we scan every
process whose parent chain leads here, repeatedly, until none is left). If this reaper is
itself SIGKILLed (the OOM killer), its tree goes to init; a resuming controller kills what of
it still carries the tag's marker (runner.kill_tag_survivors).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
GRACE_SECONDS = 2.0
ORPHANED = 125  # our exit status when the controller died (nobody is left to read it)


def _descendants(root: int) -> list[int]:
    """Every live process whose parent chain reaches `root` (from /proc)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _sweep() -> None:
    """SIGKILL every descendant and reap them, until none is left (they may fork meanwhile)."""
    for _ in range(50):
        pids = _descendants(os.getpid())
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            try:
                if os.waitpid(-1, os.WNOHANG) == (0, 0):
                    time.sleep(0.01)
            except ChildProcessError:
                break


def main(argv: list[str]) -> int:
    parent = None
    if argv[:1] == ["--parent"]:
        parent, argv = int(argv[1]), argv[2:]
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    term = []
    signal.signal(signal.SIGTERM, lambda *_: term.append(time.monotonic()))
    if parent is not None and os.getppid() != parent:
        return ORPHANED  # the controller died before we started: run nothing
    child = subprocess.Popen(argv)
    status = None
    while status is None:
        if parent is not None and os.getppid() != parent:
            break  # the controller is gone: the run goes with it (swept below)
        # waitpid(-1): the command's end, and orphans re-parented to us, reaped as they die.
        try:
            pid, st = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == child.pid:
            status = st
            break
        if term and time.monotonic() - term[0] > GRACE_SECONDS:
            break
        if pid == 0:
            time.sleep(0.02)
    _sweep()
    if parent is not None and os.getppid() != parent:
        return ORPHANED
    if status is None:  # killed at the timeout: the runner reports that, not this code
        return 128 + signal.SIGKILL
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
