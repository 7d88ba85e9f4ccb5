"""Process supervision: a command in its own session and process group, watched until it ends.

`run_process` is how every process of the candidate's starts (a run, its re-score, its
held-out score, the task's setup, the held-out build): a hard timeout that kills the whole
group, the peak memory of the whole process tree, the log on disk, capped. On Linux the
command runs under `reaper.py` (a child subreaper), so a descendant that calls setsid() or
double-forks is still killed when it ends; a random marker in its environment (MARKER_VAR) is
a second sweep. Limits from `[limits]` are enforced from outside: peak memory of the tree
(`killed_for="memory"`), free disk space (`"disk"`: the run is killed before the journal's
disk fills), the log's size (head and tail kept). What the outcome means for a run is
outcome.py's business.

`start_group` / `stop_group` are the bare group start and kill, for a process that is not a
run (the agent proposer's command): no reaper, no limits, its own output.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from overnight.run import runfiles
from overnight.task import Limits

POLL_SECONDS = 0.05
MEMORY_SAMPLE_SECONDS = 0.5
KILL_GRACE_SECONDS = 3.0
REAPER = Path(__file__).with_name("reaper.py")
MARKER_VAR = "OVERNIGHT_RUN_MARK"  # a random token per run in the environment (see _sweep_marked)
# Every run of a night (and its re-score) carries the tag's marker: a resuming controller kills
# what a dead one left running (kill_tag_survivors). Verify runs and others do not carry it.
TAG_MARKER_VAR = "OVERNIGHT_TAG_MARK"

ProgressFn = Callable[[float], None]  # called with elapsed seconds while the run is alive


@dataclass
class ProcessOutcome:
    exit_code: int | None
    wall: float
    peak_mb: float | None
    timed_out: bool
    interrupted: bool
    killed_for: str = ""  # a limit that stopped it: "memory", "disk"
    log_dropped: int = 0  # bytes of output dropped by the log cap
    cpu: float | None = None  # CPU seconds (user + system) of the process tree, from wait4: what it reaped


def start_group(argv: list[str], **popen) -> subprocess.Popen:
    """`argv` started in a session and process group of its own, so that stop_group (or a
    kill of the group) reaches every descendant that did not leave it."""
    return subprocess.Popen(argv, start_new_session=True, **popen)


def stop_group(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM to the group of `proc` (start_group), up to `grace` seconds for the leader to
    exit, then SIGKILL to whatever of the group is left; the leader is reaped."""
    if not kill_group(proc, signal.SIGTERM):
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    kill_group(proc, signal.SIGKILL)
    proc.wait()


def _end(proc: subprocess.Popen, status, runaway: bool):
    """The process's status once it and its group are gone: a runaway killed at once, anything
    else asked to stop (SIGTERM) and given KILL_GRACE_SECONDS, the group swept after either."""
    if status is None and runaway:
        kill_group(proc, signal.SIGKILL)  # a runaway gets no grace: it is filling memory or disk
    if status is None:
        kill_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + KILL_GRACE_SECONDS
        while status is None and time.monotonic() < deadline:
            status = _reap(proc, block=False)
            time.sleep(0.02)
    # Always sweep the group: children that outlive a clean exit must not keep a GPU busy.
    kill_group(proc, signal.SIGKILL)
    return status if status is not None else _reap(proc, block=True)


def run_process(
    command: str,
    cwd: Path,
    env: dict,
    log_path: Path,
    timeout: float,
    stop: threading.Event | None,
    progress: ProgressFn | None,
    limits: Limits = Limits(),
    stdin: int | None = None,
) -> ProcessOutcome:
    """Run `command` (a shell line) in `cwd` until it exits, passes `timeout`, breaks a limit
    or `stop` is set; its output (stdout and stderr) goes to a fresh `log_path`. Never raises
    for what the command does."""
    start = time.monotonic()
    argv = ["/bin/sh", "-c", command]
    if sys.platform.startswith("linux"):
        argv = [sys.executable, str(REAPER), "--parent", str(os.getpid()), *argv]  # dies with us
    proc = start_group(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL if stdin is None else stdin,
    )
    log = _CappedLog(log_path, int(limits.log_mb * 2**20))
    reader = threading.Thread(target=log.pump, args=(proc.stdout,), daemon=True)
    reader.start()
    peak = 0.0
    next_sample = start
    timed_out = interrupted = False
    killed_for = ""
    status = None
    while status is None:
        status = _reap(proc, block=False)
        if status is not None:
            break
        now = time.monotonic()
        if now >= next_sample:
            peak = max(peak, _tree_rss_mb(proc.pid))
            next_sample = now + (0.1 if limits.memory_mb else MEMORY_SAMPLE_SECONDS)
            if progress:
                progress(now - start)
            if limits.memory_mb and peak > limits.memory_mb:
                killed_for = "memory"
                break
            if _free_mb(log_path.parent) < limits.disk_reserve_mb:
                killed_for = "disk"
                break
        if now - start > timeout:
            timed_out = True
            break
        if stop is not None and stop.is_set():
            interrupted = True
            break
        # Short polls at first: a sub-second run should not pay 50 ms of harness latency.
        time.sleep(min(POLL_SECONDS, 0.002 + (now - start) / 50))
    status = _end(proc, status, runaway=bool(killed_for))
    if MARKER_VAR in env:
        _sweep_marked(env[MARKER_VAR])
    reader.join(5)
    log.close()
    code, maxrss_mb, cpu = status
    wall = time.monotonic() - start
    # Not rusage's max RSS for the limit: a child forked from a big controller counts the
    # parent's pages until it execs. A spike shorter than one sample (0.1 s) goes unseen.
    return ProcessOutcome(
        code, wall, max(peak, maxrss_mb) or None, timed_out, interrupted, killed_for, log.dropped, cpu
    )


class _CappedLog:
    """The run's output to disk, at most `cap` bytes: the first half as it comes (a live
    tail works), then only the last half kept in memory and written at the end, after a
    marker saying how much was dropped. A candidate printing gigabytes cannot fill the disk,
    and the summary block at the end of the log survives."""

    def __init__(self, path: Path, cap: int):
        self.f = runfiles.create_fresh(path)  # never through a link the run left at that name
        self.head = max(cap // 2, 1)
        self.tail_cap = max(cap - self.head, 1)
        self.written = 0
        self.tail = bytearray()
        self.dropped = 0

    def pump(self, stream) -> None:
        try:
            while chunk := stream.read1(65536):
                room = self.head - self.written
                if room > 0:
                    self.f.write(chunk[:room])
                    self.f.flush()
                    self.written += min(room, len(chunk))
                    chunk = chunk[room:]
                if chunk:
                    self.tail += chunk
                    if len(self.tail) > self.tail_cap:
                        cut = len(self.tail) - self.tail_cap
                        self.dropped += cut
                        del self.tail[:cut]
        except (OSError, ValueError):
            pass
        finally:
            stream.close()

    def close(self) -> None:
        if self.dropped:
            self.f.write(f"\n[overnight: {self.dropped} bytes of output dropped (limits.log_mb)]\n".encode())
        self.f.write(self.tail)
        self.f.close()


def tag_mark(tag_dir: Path) -> str:
    """The marker of a tag's runs: `<tag>:<hash of <root>/.overnight/<tag>>` (one per repository and tag)."""
    path = Path(tag_dir).resolve()
    return f"{path.name}:{hashlib.sha256(str(path).encode()).hexdigest()[:16]}"


def kill_tag_survivors(tag_dir: Path) -> int:
    """SIGKILL every process carrying the tag's marker (what a killed controller left running:
    a reaper that missed its parent's death, or a descendant that escaped it); returns how many.
    Call only while no run of the tag is started by this process (before the first)."""
    return _kill_carrying(f"{TAG_MARKER_VAR}={tag_mark(tag_dir)}".encode())


def _sweep_marked(mark: str) -> None:
    """Kill what still carries this run's marker in its environment: a belt to the reaper's
    braces (and the only sweep where there is no reaper). A process that cleared its
    environment and left the group escapes this one; the reaper still catches it."""
    _kill_carrying(f"{MARKER_VAR}={mark}".encode())


def _kill_carrying(needle: bytes) -> int:
    """SIGKILL every process (not this one) whose environment holds `needle` (VAR=value), scanning
    /proc again until a pass finds none (they may fork meanwhile); returns how many were killed."""
    me, killed = os.getpid(), set()
    for _ in range(20):
        found = False
        for name in os.listdir("/proc") if os.path.isdir("/proc") else []:
            if not name.isdigit() or int(name) == me:
                continue
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    if needle in f.read().split(b"\0"):
                        os.kill(int(name), signal.SIGKILL)
                        killed.add(int(name))
                        found = True
            except (OSError, ValueError):
                pass
        if not found:
            break
        time.sleep(0.05)  # a killed process is a zombie (empty environ) until its parent reaps it
    return len(killed)


def _reap(proc: subprocess.Popen, block: bool) -> tuple[int, float, float] | None:
    """wait4 instead of Popen.wait: its rusage gives the largest RSS in the process tree, which
    catches runs too short for the sampler, and the CPU time of the child and every descendant
    it reaped (the reaper reaps them all). Returns (exit code, max RSS in MB, CPU s) or None."""
    pid, status, usage = os.wait4(proc.pid, 0 if block else os.WNOHANG)
    if pid == 0:
        return None
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # tell Popen the child is reaped
    return code, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime  # Linux reports KiB


def kill_group(proc: subprocess.Popen, sig: int) -> bool:
    """Signal the process group `proc` leads; False when there is none any more."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _tree_rss_mb(pid: int) -> float:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def _free_mb(path: Path) -> float:
    try:
        return shutil.disk_usage(path).free / 2**20
    except OSError:
        return float("inf")
