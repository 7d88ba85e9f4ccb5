"""The CLI as users and other processes meet it: its one-line errors, and a controller in
another process watched (and killed) from outside, as a second terminal or the OOM killer would."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

CLI = [sys.executable, "-m", "overnight"]


def one_error_line(result, *needles):
    """A CLI result that failed the way users are promised: exit 2, one `error: ` line on
    stderr holding every needle, no traceback. Returns that line."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def kill_controller_when(
    proc: subprocess.Popen,
    ready: Callable[[], bool],
    state: Callable[[], object],
    timeout: float = 90,
    poll: float = 0.03,
) -> None:
    """Poll `ready()` as another process would; SIGKILL the controller `proc` once it holds,
    then let its orphaned children (their own sessions: a training run, a re-score) finish.
    `state()` is shown when the controller dies first or the wait times out."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, state()
        time.sleep(poll)
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.kill()
    proc.communicate(timeout=10)
    psutil.wait_procs(children, timeout=15)


def wait_for(pred, timeout: float, what: str):
    """pred()'s first true value, polled every 0.1 s for `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def run_procs(root: Path) -> list[psutil.Process]:
    """Training processes of this task (their run marker and result file point into root)."""
    found = []
    for p in psutil.process_iter():
        try:
            env = p.environ()
        except (psutil.Error, OSError):
            continue
        if "OVERNIGHT_RUN_MARK" in env and env.get("OVERNIGHT_RESULT", "").startswith(str(root)):
            found.append(p)
    return found
