"""One run: a candidate's commit executed in its own worktree under the budget.

The runner owns the process: its own session and process group, a hard timeout that kills the
whole group, peak memory of the whole process tree, the log on disk. The metric comes only from
the configured source; with `result-file` nothing the candidate prints is trusted.

What this does NOT protect against (yet): a child that leaves the process group with setsid
and outlives the run, or code that reads files outside its worktree. See the README's
threat model.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Callable

import psutil

from overnight import gitops
from overnight.summary import parse_summary
from overnight.task import TaskSpec, file_hash

POLL_SECONDS = 0.05
MEMORY_SAMPLE_SECONDS = 0.5
KILL_GRACE_SECONDS = 3.0
LOG_TAIL_LINES = 40


class RunStatus(str, Enum):
    OK = "ok"
    CRASH = "crash"  # non-zero exit
    TIMEOUT = "timeout"  # killed at the hard timeout
    INVALID = "invalid"  # exited 0 but no finite metric, or a protected file differed
    INTERRUPTED = "interrupted"  # the controller stopped it (Ctrl-C, shutdown); will be re-run


@dataclass
class RunResult:
    status: RunStatus
    value: float | None = None
    exit_code: int | None = None
    wall_seconds: float = 0.0
    training_seconds: float | None = None
    peak_memory_mb: float | None = None
    log_path: str = ""
    log_tail: str = ""
    error: str = ""
    summary: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["status"] = self.status.value
        return d


@dataclass(frozen=True)
class RunRequest:
    """Everything needed to execute one seeded run of a commit."""

    commit: str
    seed: int
    run_dir: Path  # log and result file live here, outside the worktree
    worktree: Path
    protected_hashes: dict[str, str]
    extra_env: dict[str, str] = field(default_factory=dict)


ProgressFn = Callable[[float], None]  # called with elapsed seconds while the run is alive


def execute(task: TaskSpec, req: RunRequest, stop: threading.Event | None = None,
            progress: ProgressFn | None = None) -> RunResult:
    """Materialise the worktree, run the command, collect the outcome; never raises for the
    candidate's faults (a broken candidate is data)."""
    req.run_dir.mkdir(parents=True, exist_ok=True)
    gitops.worktree_add(task.root, req.worktree, req.commit)
    try:
        return run_checkout(task, req, stop, progress)
    finally:
        gitops.worktree_remove(task.root, req.worktree)


def run_checkout(task: TaskSpec, req: RunRequest, stop: threading.Event | None = None,
                 progress: ProgressFn | None = None) -> RunResult:
    """Run the command in `req.worktree`, already holding the commit's files (a git worktree
    here, an unpacked archive on a Ray worker that has no clone of the repository)."""
    req.run_dir.mkdir(parents=True, exist_ok=True)
    log_path = req.run_dir / "log.txt"
    result_path = req.run_dir / "result.json"
    result_path.unlink(missing_ok=True)
    bad = [p for p, h in req.protected_hashes.items()
           if not (req.worktree / p).is_file() or file_hash((req.worktree / p).read_bytes()) != h]
    if bad:
        return RunResult(RunStatus.INVALID, log_path=str(log_path),
                         error=f"protected file(s) differ from the task's: {', '.join(bad)}")
    env = {**os.environ, **task.env, **req.extra_env,
           "OVERNIGHT_BUDGET": f"{task.budget:g}", "OVERNIGHT_SEED": str(req.seed),
           "OVERNIGHT_RESULT": str(result_path), "PYTHONUNBUFFERED": "1"}
    outcome = _run_process(task.command, req.worktree, env, log_path, task.timeout, stop, progress)
    return _judge_outcome(task, outcome, log_path, result_path)


@dataclass
class _Outcome:
    exit_code: int | None
    wall: float
    peak_mb: float | None
    timed_out: bool
    interrupted: bool


def _run_process(command: str, cwd: Path, env: dict, log_path: Path, timeout: float,
                 stop: threading.Event | None, progress: ProgressFn | None) -> _Outcome:
    start = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, shell=True, cwd=cwd, env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    peak = 0.0
    next_sample = start
    timed_out = interrupted = False
    status = None
    while status is None:
        status = _reap(proc, block=False)
        if status is not None:
            break
        now = time.monotonic()
        if now >= next_sample:
            peak = max(peak, _tree_rss_mb(proc.pid))
            next_sample = now + MEMORY_SAMPLE_SECONDS
            if progress:
                progress(now - start)
        if now - start > timeout:
            timed_out = True
            break
        if stop is not None and stop.is_set():
            interrupted = True
            break
        # Short polls at first: a sub-second run should not pay 50 ms of harness latency.
        time.sleep(min(POLL_SECONDS, 0.002 + (now - start) / 50))
    if status is None:
        _kill_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + KILL_GRACE_SECONDS
        while status is None and time.monotonic() < deadline:
            status = _reap(proc, block=False)
            time.sleep(0.02)
    # Always sweep the group: children that outlive a clean exit must not keep a GPU busy.
    _kill_group(proc, signal.SIGKILL)
    if status is None:
        status = _reap(proc, block=True)
    code, maxrss_mb = status
    wall = time.monotonic() - start
    return _Outcome(code, wall, max(peak, maxrss_mb) or None, timed_out, interrupted)


def _reap(proc: subprocess.Popen, block: bool) -> tuple[int, float] | None:
    """wait4 instead of Popen.wait: its rusage gives the largest RSS in the process tree, which
    catches runs too short for the sampler. Returns (exit code, max RSS in MB) or None."""
    pid, status, usage = os.wait4(proc.pid, 0 if block else os.WNOHANG)
    if pid == 0:
        return None
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # tell Popen the child is reaped
    return code, usage.ru_maxrss / 1024  # Linux reports KiB


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


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


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            data = f.read().decode(errors="replace")
    except OSError:
        return ""
    # Keep the final newline: the summary parser reads a last line without one as cut off.
    return "\n".join(data.splitlines()[-lines:]) + ("\n" if data.endswith("\n") else "")


def read_metric(task: TaskSpec, log_text: str, result_path: Path) -> tuple[float | None, dict, str]:
    """(value, result object, error) from the configured source only."""
    if task.metric.source == "stdout":
        matches = re.findall(task.metric.pattern, log_text, re.MULTILINE)
        if not matches:
            return None, {}, f"no line matching metric.pattern in the output"
        raw = matches[-1] if isinstance(matches[-1], str) else matches[-1][0]
        try:
            return float(raw), {}, ""
        except ValueError:
            return None, {}, f"metric text {raw!r} is not a number"
    try:
        data = json.loads(result_path.read_text())
    except FileNotFoundError:
        return None, {}, "no result file was written"
    except (OSError, ValueError) as exc:
        return None, {}, f"result file is not valid JSON ({exc})"
    if not isinstance(data, dict) or task.metric.name not in data:
        return None, data if isinstance(data, dict) else {}, f"result file has no {task.metric.name!r}"
    try:
        return float(data[task.metric.name]), data, ""
    except (TypeError, ValueError):
        return None, data, f"{task.metric.name} in the result file is not a number"


def _judge_outcome(task: TaskSpec, out: _Outcome, log_path: Path, result_path: Path) -> RunResult:
    tail = _tail(log_path)
    res = RunResult(RunStatus.OK, exit_code=out.exit_code, wall_seconds=out.wall,
                    peak_memory_mb=out.peak_mb, log_path=str(log_path), log_tail=tail)
    if out.interrupted:
        res.status, res.error = RunStatus.INTERRUPTED, "stopped by the controller"
        return res
    if out.timed_out:
        res.status, res.error = RunStatus.TIMEOUT, f"killed at the hard timeout ({task.timeout:g} s)"
        return res
    log_text = log_path.read_text(errors="replace") if task.metric.source == "stdout" else tail
    res.summary = parse_summary(tail).values
    value, data, err = read_metric(task, log_text, result_path)
    res.training_seconds = _float_or_none(data.get("training_seconds", res.summary.get("training_seconds")))
    if data.get("peak_memory_mb") is not None:
        # The task's own figure (e.g. GPU memory) is more precise than sampled RSS.
        res.peak_memory_mb = _float_or_none(data["peak_memory_mb"]) or res.peak_memory_mb
    if out.exit_code != 0:
        res.status, res.error = RunStatus.CRASH, f"exit code {out.exit_code}"
        return res
    if value is None or not math.isfinite(value):
        res.status = RunStatus.INVALID
        res.error = err or f"{task.metric.name} is {value} (not finite)"
        return res
    res.value = value
    return res


def _float_or_none(x) -> float | None:
    try:
        return float(x)
    except (TypeError, ValueError):
        return None
