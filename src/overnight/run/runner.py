"""One run: a candidate's commit executed in its own worktree under the budget.

The runner owns the process: its own session and process group, a hard timeout that kills the
whole group, peak memory of the whole process tree, the log on disk. The metric comes only from
the configured source; with `result-file` nothing the candidate prints is trusted.

On Linux the command runs under `reaper.py` (a child subreaper), so a descendant that calls
setsid() or double-forks is still killed when the run ends. Limits from `[limits]` are
enforced from outside: peak memory of the tree (-> `oom`), the log's size (head and tail
kept), free disk space (the run is killed before the journal's disk fills), and the budget
(training time reported, wall time measured; over -> `over-budget`). With `limits.sandbox`
the command runs in `bwrap` or `unshare` (sandbox.py): no network, writable only the run's
worktree and run directory (bwrap: and a private /tmp), the held-out data hidden. While the
run is alive the held-out data (`.overnight/heldout/`, `task.watch`) is watched with inotify
(watch.py): an open -> `reads-heldout`. After a re-score that agreed, the weights are scored on
the held-out slice (`heldout_score`, `[heldout]`).

What this does NOT protect against: code that reads the validation data — the candidate runs
in the same process as the protected evaluation, so anything the evaluation can read, it can
read (reads of val.bin cannot be told from the evaluation's own; the held-out slice is what
catches a fit of it); without the sandbox, writes outside its worktree (the journal in
`.overnight/` included, which the tamper watch detects). See docs/threat-model.md.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from pathlib import Path

import psutil

from overnight import gitops
from overnight.run import credentials, heldout_store, runfiles, sandbox
from overnight.run.summary import parse_summary
from overnight.run.watch import Watch
from overnight.task import Limits, TaskSpec, file_hash

POLL_SECONDS = 0.05
MEMORY_SAMPLE_SECONDS = 0.5
KILL_GRACE_SECONDS = 3.0
LOG_TAIL_LINES = 40
REAPER = Path(__file__).with_name("reaper.py")
MARKER_VAR = "OVERNIGHT_RUN_MARK"  # a random token per run in the environment (see _sweep_marked)
# Every run of a night (and its re-score) carries the tag's marker: a resuming controller kills
# what a dead one left running (kill_tag_survivors). Verify runs and others do not carry it.
TAG_MARKER_VAR = "OVERNIGHT_TAG_MARK"


class RunStatus(str, Enum):
    OK = "ok"
    CRASH = "crash"  # non-zero exit
    TIMEOUT = "timeout"  # killed at the hard timeout
    INVALID = "invalid"  # exited 0 but no finite metric, or a protected file differed
    INTERRUPTED = "interrupted"  # the controller stopped it (Ctrl-C, shutdown); will be re-run
    OOM = "oom"  # killed: its process tree went over limits.memory_mb
    OVER_BUDGET = "over-budget"  # trained or ran longer than the budget allows: discarded, flagged
    MISMATCH = "mismatch"  # the protected re-score in a fresh process disagrees: discarded, flagged
    READS_HELDOUT = "reads-heldout"  # a watched file (held-out data) was opened while it ran: discarded, flagged


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
    # Harness-set facts only (rescored, held-out score, sandbox, watch, ray_dir...): the keep
    # reads from here, so nothing the candidate prints or writes may land in it.
    summary: dict = field(default_factory=dict)
    printed: dict = field(default_factory=dict)  # the log's `---` block: for display, never judged

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
    # Re-score inside the run, right after it (verify; direct callers). False (the local and
    # Ray executors): the controller has it re-scored later, off the slot, and only when the
    # candidate is about to be kept (rescorer.py, rescore_run below, executors/ray.py).
    rescore: bool = True


ProgressFn = Callable[[float], None]  # called with elapsed seconds while the run is alive


def protected_hashes(task: TaskSpec, commit: str) -> dict[str, str]:
    """The hashes every run's protected files must match: those of the tag's base commit."""
    return {p: file_hash(gitops.read_file(task.root, commit, p) or b"") for p in task.protected}


def execute(
    task: TaskSpec, req: RunRequest, stop: threading.Event | None = None, progress: ProgressFn | None = None
) -> RunResult:
    """Materialise the worktree, run the command, collect the outcome; never raises for the
    candidate's faults (a broken candidate is data)."""
    req.run_dir.mkdir(parents=True, exist_ok=True)
    gitops.worktree_add(task.root, req.worktree, req.commit)
    try:
        return run_checkout(task, req, stop, progress)
    finally:
        gitops.worktree_remove(task.root, req.worktree)


def run_checkout(
    task: TaskSpec, req: RunRequest, stop: threading.Event | None = None, progress: ProgressFn | None = None
) -> RunResult:
    """Run the command in `req.worktree`, already holding the commit's files (a git worktree
    here, an unpacked archive on a Ray worker that has no clone of the repository)."""
    req.run_dir.mkdir(parents=True, exist_ok=True)
    log_path = req.run_dir / "log.txt"
    result_path = req.run_dir / "result.json"
    for name in RUN_RECORD:  # an earlier run's record in a reused directory (verify), or a trap
        runfiles.remove(req.run_dir / name)
    bad = _protected_changed(req)
    if bad:
        return RunResult(
            RunStatus.INVALID,
            log_path=str(log_path),
            error=f"protected file(s) differ from the task's: {', '.join(bad)}",
        )
    env = _run_env(task, req, result_path)
    command = task.command
    if task.limits.sandbox:
        why = sandbox_unavailable()
        if why:
            return RunResult(
                RunStatus.CRASH, log_path=str(log_path), error=f"limits.sandbox is on but unavailable here: {why}"
            )
        extra = [Path(w).expanduser() for w in task.limits.sandbox_writable]
        command = _sandboxed(
            command, task.root, [req.worktree, req.run_dir, *extra], hidden=heldout_store.hidden_paths(task)
        )
    with Watch(heldout_store.watched_paths(task)) as watch:
        outcome = _run_process(command, req.worktree, env, log_path, task.timeout, stop, progress, task.limits)
    res = _judge_outcome(task, outcome, log_path, result_path)
    trapped = runfiles.traps(req.run_dir, ("log.txt", "result.json")) + [
        f"{name} exists (only the harness writes it, after the run)"
        for name in HARNESS_LATER
        if os.path.lexists(req.run_dir / name)
    ]
    if trapped and res.status != RunStatus.INTERRUPTED:
        res.status, res.value = RunStatus.INVALID, None
        res.error = f"the run left traps in its run directory: {'; '.join(trapped)}"
        return res
    if task.limits.sandbox:
        res.summary["sandbox"] = sandbox.tool()  # which one ran it (its first log line says so too)
    if _read_secrets(res, watch, "while it ran"):
        return res
    changed = _protected_changed(req) if res.status not in (RunStatus.INTERRUPTED, RunStatus.TIMEOUT) else []
    if changed:  # rewritten while it ran (the evaluation it then imported, or the re-score's code)
        res.status, res.value = RunStatus.INVALID, None
        res.error = f"protected file(s) changed during the run: {', '.join(changed)}"
        return res
    if res.status == RunStatus.OK and task.rescore and req.rescore:
        rescore(task, req, env, res, stop)
        if res.status == RunStatus.OK:
            heldout_score(task, req, env, res, stop)
    return res


def task_env(task: TaskSpec, seed: int, tag_dir: Path | None, extra: dict | None = None) -> dict:
    """The environment of a process of the task's (a run, its re-score, the task's setup): the
    user's credentials withheld unless `[task] pass_env` names them (credentials.py), `extra`
    (a slot's pinning), the budget and seed, a fresh run marker and the tag's marker."""
    return {
        **credentials.scrub(os.environ, task.pass_env),
        **task.env,
        **(extra or {}),
        "OVERNIGHT_BUDGET": f"{task.budget:g}",
        "OVERNIGHT_SEED": str(seed),
        "PYTHONUNBUFFERED": "1",
        MARKER_VAR: secrets.token_hex(8),
        TAG_MARKER_VAR: tag_mark(tag_dir) if tag_dir is not None else "",
    }


def _run_env(task: TaskSpec, req: RunRequest, result_path: Path) -> dict:
    """The run's environment; the deferred re-score rebuilds the same one (a fresh marker)."""
    # A night's run directory is <root>/.overnight/<tag>/runs/<exp>-<run>.
    tag_dir = req.run_dir.parent.parent if req.run_dir.parent.name == "runs" else None
    return {**task_env(task, req.seed, tag_dir, req.extra_env), "OVERNIGHT_RESULT": str(result_path)}


def tag_mark(tag_dir: Path) -> str:
    """The marker of a tag's runs: `<tag>:<hash of <root>/.overnight/<tag>>` (one per repository and tag)."""
    path = Path(tag_dir).resolve()
    return f"{path.name}:{hashlib.sha256(str(path).encode()).hexdigest()[:16]}"


def kill_tag_survivors(tag_dir: Path) -> int:
    """SIGKILL every process carrying the tag's marker (what a killed controller left running:
    a reaper that missed its parent's death, or a descendant that escaped it); returns how many.
    Call only while no run of the tag is started by this process (before the first)."""
    return _kill_carrying(f"{TAG_MARKER_VAR}={tag_mark(tag_dir)}".encode())


def rescore_run(task: TaskSpec, req: RunRequest, value: float, stop: threading.Event | None = None) -> RunResult:
    """The re-score of a run that already ended (its worktree is gone, its run directory with
    result.json and any saved weights is still there): a fresh worktree of `req.commit`, then
    rescore_checkout. Returns OK with summary["rescored"], MISMATCH with the reason, or
    INTERRUPTED (stop)."""
    gitops.worktree_add(task.root, req.worktree, req.commit)
    try:
        return rescore_checkout(task, req, value, stop)
    finally:
        gitops.worktree_remove(task.root, req.worktree)


def rescore_checkout(
    task: TaskSpec, req: RunRequest, value: float, stop: threading.Event | None = None, heldout: bytes | None = None
) -> RunResult:
    """Re-score the ended run in `req.run_dir` from `req.worktree`, a fresh checkout of its
    commit (a git worktree here, an unpacked archive on a Ray worker): protected files checked
    against the task's, then `rescore` against the journaled `value`, then the held-out score
    (`heldout`: the slice's bytes where this process did not load it, a Ray worker)."""
    res = RunResult(RunStatus.OK, value=value, log_path=str(req.run_dir / "rescore.txt"))
    bad = _protected_changed(req)
    if bad:
        res.status = RunStatus.MISMATCH
        res.error = f"the re-score's checkout has protected file(s) differing from the task's: {', '.join(bad)}"
        return res
    env = _run_env(task, req, req.run_dir / "result.json")
    rescore(task, req, env, res, stop)
    if res.status == RunStatus.OK:
        heldout_score(task, req, env, res, stop, heldout)
    return res


def rescore(task: TaskSpec, req: RunRequest, env: dict, res: RunResult, stop: threading.Event | None) -> None:
    """Score the run again with the task's protected `rescore` command, in a fresh process
    that never ran the candidate's training loop; a disagreement beyond
    `rescore_tolerance` turns the run into MISMATCH (the candidate is discarded and flagged).

    This is what makes the metric trustworthy against code in the training process: a faked
    result file, an evaluation monkeypatched at import, a score written by hand. What the
    re-score sees is whatever the protected code of the task reads (the toy: train.py's
    constants, parsed, not run; nanogpt: the weights its protected report() saved, rebuilt from
    train.py's definitions). It does not protect against a candidate that changes what is scored
    (e.g. writes better weights than it trained) within the budget, nor against code the
    rescore itself imports from the candidate's files."""
    out_path = req.run_dir / "rescore.json"
    runfiles.remove(out_path)
    log_path = req.run_dir / "rescore.txt"
    renv = {**env, "OVERNIGHT_RESULT": str(out_path), "OVERNIGHT_RESCORE": str(req.run_dir / "result.json")}
    out = _run_process(task.rescore, req.worktree, renv, log_path, task.timeout, stop, None, task.limits)
    if out.interrupted:
        res.status, res.error = RunStatus.INTERRUPTED, "stopped by the controller (during the re-score)"
        return
    value, _, err = read_metric(replace(task, metric=replace(task.metric, source="result-file")), "", out_path)
    if out.exit_code != 0 or out.timed_out or value is None or not math.isfinite(value):
        res.status = RunStatus.MISMATCH
        res.error = (
            f"the protected re-score failed ({'timeout' if out.timed_out else f'exit {out.exit_code}'}"
            f"{', ' + err if err else ''}); see {log_path}"
        )
        return
    res.summary["rescored"] = value
    if abs(value - res.value) > task.rescore_tolerance * max(abs(value), 1e-12):
        res.status = RunStatus.MISMATCH
        res.error = (
            f"re-scored by protected code in a fresh process: {task.metric.name} {value:.6g}, "
            f"but the run reported {res.value:.6g}"
        )
        return
    res.value = value  # agreed: the harness's own figure is the one judged (journal.set_rescored)


def heldout_score(
    task: TaskSpec, req: RunRequest, env: dict, res: RunResult, stop: threading.Event | None, data: bytes | None = None
) -> None:
    """The run's weights scored on the held-out slice (`[heldout]`, heldout_store.py) by harness
    code in a fresh process that reads the tokens from stdin (a memfd: the stored file is not
    opened). Writes `heldout.json` in the run directory and `summary["heldout_<metric>"]`; the
    keep decision compares it (heldout_store.check_keep). Skipped where this process holds no
    held-out slice and is handed none (`data`: a Ray worker gets it with the re-score), as in
    `verify`. The candidate's model code runs in this process and sees the tokens: in the
    bwrap sandbox it can write nothing but a private /tmp."""
    if task.heldout is None:
        return
    data = data if data is not None else heldout_store.loaded(task)
    if data is None:
        return
    import tempfile

    scratch = Path(tempfile.mkdtemp(prefix="overnight-heldout-"))
    log_path = req.run_dir / "heldout.txt"
    henv = {
        **env,
        "OVERNIGHT_RESULT": str(scratch / "heldout.json"),
        "OVERNIGHT_RESCORE": str(req.run_dir / "result.json"),
    }
    command = f"{task.heldout.command} score"
    if task.limits.sandbox and not sandbox_unavailable():
        command = _sandboxed(command, task.root, [scratch], hidden=heldout_store.hidden_paths(task))
    fd = heldout_store.memfd(data)
    try:
        with Watch(heldout_store.watched_paths(task)) as watch:
            out = _run_process(command, req.worktree, henv, log_path, task.timeout, stop, None, task.limits, stdin=fd)
        value, _, err = read_metric(
            replace(task, metric=replace(task.metric, name=heldout_store.metric_key(task), source="result-file")),
            "",
            scratch / "heldout.json",
        )
    finally:
        os.close(fd)
        shutil.rmtree(scratch, ignore_errors=True)
    if out.interrupted:
        res.status, res.error = RunStatus.INTERRUPTED, "stopped by the controller (during the held-out score)"
        return
    if _read_secrets(res, watch, "during its held-out score"):
        # Reported as a failed re-score (the re-score's caller knows OK and MISMATCH): the keep
        # is refused, the reason says what was opened.
        res.status, res.error = RunStatus.MISMATCH, f"reads-heldout: {res.error}"
        return
    if out.exit_code != 0 or out.timed_out or value is None or not math.isfinite(value):
        res.status = RunStatus.MISMATCH
        res.error = (
            f"the held-out score failed ({'timeout' if out.timed_out else f'exit {out.exit_code}'}"
            f"{', ' + err if err else ''}); see {log_path}"
        )
        return
    res.summary[heldout_store.metric_key(task)] = value
    runfiles.write_fresh(req.run_dir / "heldout.json", json.dumps({heldout_store.metric_key(task): value}))


def _read_secrets(res: RunResult, watch: Watch, when: str) -> bool:
    """Turn `res` into READS_HELDOUT when the watch saw a watched file opened; True then."""
    if watch.unavailable:
        res.summary["watch"] = f"unwatched: {watch.unavailable}"
    if not watch.hits or res.status == RunStatus.INTERRUPTED:
        return False
    res.status, res.value = RunStatus.READS_HELDOUT, None
    res.error = (
        f"held-out data was opened {when} ({'; '.join(watch.hits[:3])}): a run must never read "
        "it (inotify cannot say which process did; every run alive then is discarded)"
    )
    return True


def _protected_changed(req: RunRequest) -> list[str]:
    return [
        p
        for p, h in req.protected_hashes.items()
        if not (req.worktree / p).is_file() or file_hash((req.worktree / p).read_bytes()) != h
    ]


def sandbox_unavailable() -> str:
    """'' when a sandbox (bwrap, else unshare) can be made here, else why not (sandbox.py)."""
    return sandbox.unavailable()


def _sandboxed(command: str, root: Path, writable: list[Path], hidden: list[Path] = ()) -> str:
    """`command` in the sandbox sandbox.py picks: no network, only `writable` (and
    limits.sandbox_writable) writable, `hidden` (the held-out data) not there."""
    return sandbox.wrap(command, root, writable, hidden)


@dataclass
class _Outcome:
    exit_code: int | None
    wall: float
    peak_mb: float | None
    timed_out: bool
    interrupted: bool
    killed_for: str = ""  # a limit that stopped it: "memory", "disk"
    log_dropped: int = 0  # bytes of output dropped by the log cap


def _run_process(
    command: str,
    cwd: Path,
    env: dict,
    log_path: Path,
    timeout: float,
    stop: threading.Event | None,
    progress: ProgressFn | None,
    limits: Limits = Limits(),
    stdin: int | None = None,
) -> _Outcome:
    start = time.monotonic()
    argv = ["/bin/sh", "-c", command]
    if sys.platform.startswith("linux"):
        argv = [sys.executable, str(REAPER), "--parent", str(os.getpid()), *argv]  # dies with us
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL if stdin is None else stdin,
        start_new_session=True,
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
    if status is None and killed_for:
        _kill_group(proc, signal.SIGKILL)  # a runaway gets no grace: it is filling memory or disk
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
    if MARKER_VAR in env:
        _sweep_marked(env[MARKER_VAR])
    reader.join(5)
    log.close()
    code, maxrss_mb = status
    wall = time.monotonic() - start
    # Not rusage's max RSS for the limit: a child forked from a big controller counts the
    # parent's pages until it execs. A spike shorter than one sample (0.1 s) goes unseen.
    return _Outcome(code, wall, max(peak, maxrss_mb) or None, timed_out, interrupted, killed_for, log.dropped)


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


def _free_mb(path: Path) -> float:
    try:
        return shutil.disk_usage(path).free / 2**20
    except OSError:
        return float("inf")


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
        data = runfiles.read_capped(path, runfiles.TAIL_CAP, tail=True).decode(errors="replace")
    except OSError:
        return ""
    # Keep the final newline: the summary parser reads a last line without one as cut off.
    return "\n".join(data.splitlines()[-lines:]) + ("\n" if data.endswith("\n") else "")


def read_metric(task: TaskSpec, log_text: str, result_path: Path) -> tuple[float | None, dict, str]:
    """(value, result object, error) from the configured source only."""
    if task.metric.source == "stdout":
        matches = re.findall(task.metric.pattern, log_text, re.MULTILINE)
        if not matches:
            return None, {}, "no line matching metric.pattern in the output"
        raw = matches[-1] if isinstance(matches[-1], str) else matches[-1][0]
        try:
            return float(raw), {}, ""
        except ValueError:
            return None, {}, f"metric text {raw!r} is not a number"
    try:
        data = json.loads(runfiles.read_capped(result_path))
    except FileNotFoundError:
        return None, {}, "no result file was written"
    except runfiles.TrapError as exc:
        return None, {}, f"result file refused: {exc}"
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: "[[[[..." nested past the parser
        return None, {}, f"result file is not valid JSON ({type(exc).__name__}: {str(exc)[:200]})"
    if not isinstance(data, dict) or task.metric.name not in data:
        return None, data if isinstance(data, dict) else {}, f"result file has no {task.metric.name!r}"
    try:
        return float(data[task.metric.name]), data, ""
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer of 400 digits
        return None, data, f"{task.metric.name} in the result file is not a number"


def _judge_outcome(task: TaskSpec, out: _Outcome, log_path: Path, result_path: Path) -> RunResult:
    tail = _tail(log_path)
    res = RunResult(
        RunStatus.OK,
        exit_code=out.exit_code,
        wall_seconds=out.wall,
        peak_memory_mb=out.peak_mb,
        log_path=str(log_path),
        log_tail=tail,
    )
    if out.interrupted:
        res.status, res.error = RunStatus.INTERRUPTED, "stopped by the controller"
        return res
    if out.timed_out:
        res.status, res.error = RunStatus.TIMEOUT, f"killed at the hard timeout ({task.timeout:g} s)"
        return res
    if out.killed_for == "memory":
        res.status = RunStatus.OOM
        res.error = f"killed: its processes used over limits.memory_mb ({task.limits.memory_mb:g} MB)"
        return res
    if out.killed_for == "disk":
        res.status = RunStatus.CRASH
        res.error = f"killed: free disk space fell below limits.disk_reserve_mb ({task.limits.disk_reserve_mb:g} MB)"
        return res
    log_text = tail
    if task.metric.source == "stdout":
        try:  # the log is the harness's own file (created fresh, capped by limits.log_mb)
            log_text = runfiles.read_capped(log_path, int(task.limits.log_mb * 2**20) + 4096).decode(errors="replace")
        except OSError:
            pass
    res.printed = parse_summary(tail).values
    value, data, err = read_metric(task, log_text, result_path)
    res.training_seconds = _float_or_none(data.get("training_seconds", res.printed.get("training_seconds")))
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
    over = _over_budget(task, res)
    if over:
        res.status, res.error = RunStatus.OVER_BUDGET, over
    if out.log_dropped:
        res.summary["log_dropped_bytes"] = out.log_dropped
    return res


def _over_budget(task: TaskSpec, res: RunResult) -> str:
    """Why the run broke the budget, or ''. Wall time is the harness's own clock; training
    time is what the result reports (a candidate that ignores OVERNIGHT_BUDGET while the
    protected code times it is caught there; one that fakes its report, only by wall time)."""
    lim, budget = task.limits, task.budget
    if res.training_seconds is not None and res.training_seconds > lim.training_limit(budget):
        return (
            f"over budget: trained {res.training_seconds:.1f} s, budget {budget:g} s "
            f"(limit {lim.training_limit(budget):.1f} s with tolerance)"
        )
    if res.wall_seconds > lim.wall_limit(budget):
        return (
            f"over budget: ran {res.wall_seconds:.1f} s of wall time, budget {budget:g} s + "
            f"{lim.wall_limit(budget) - budget:g} s start-up/evaluation (limits.overhead)"
        )
    return ""


def _float_or_none(x) -> float | None:
    try:
        return float(x)
    except (TypeError, ValueError, OverflowError):
        return None


RUN_RECORD = (
    "log.txt",
    "result.json",
    "rescore.txt",
    "rescore.json",
    "heldout.txt",
    "heldout.json",
)  # what pruning keeps
HARNESS_LATER = RUN_RECORD[2:]  # written by the harness after the run: the run may not create them


def prune_run_dir(run_dir: Path) -> int:
    """Delete what a run left in its directory besides its record (checkpoints, samples):
    called for experiments that were not kept. Returns the bytes freed."""
    freed = 0
    if not run_dir.is_dir():
        return 0
    for p in run_dir.iterdir():
        if p.name in RUN_RECORD:
            continue
        try:
            if p.is_dir() and not p.is_symlink():
                freed += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
                shutil.rmtree(p, ignore_errors=True)
            else:
                freed += p.lstat().st_size
                p.unlink()
        except OSError:
            pass
    return freed
