"""Processes that outlive their controller (issue 12, item 7).

A kill -9 of `overnight run` must take its runs with it (reaper.py notices that its parent
is gone and sweeps the run), and a resuming controller must kill whatever of its tag is still
running (process.TAG_MARKER_VAR) before it runs anything: else the killed night's training goes
on, with no timeout, beside the resumed night running the same experiment again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from overnight.night.config import RunConfig
from overnight.night.controller import Controller
from overnight.run.process import TAG_MARKER_VAR, tag_mark
from overnight.testing.toy import write_toy

OVERNIGHT = Path(sys.executable).with_name("overnight")  # the venv's console script


def _environ(pid: str) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def _run_processes(root: Path) -> dict[int, str]:
    """Live processes of a run of the night in `root`: every run carries OVERNIGHT_RUN_MARK,
    and its OVERNIGHT_RESULT lies under the repository (true before and after the fix)."""
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        env = _environ(pid)
        if any(v.startswith(b"OVERNIGHT_RUN_MARK=") for v in env) and any(
            v.startswith(b"OVERNIGHT_RESULT=" + str(root).encode()) for v in env
        ):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    out[int(pid)] = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                pass
    return out


def _kill_all(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_kill_9_of_the_controller_takes_its_runs_with_it(tmp_path):
    root = write_toy(tmp_path / "toy", env={"TOY_SLEEP": "60"})  # the baseline trains for a minute
    proc = subprocess.Popen(
        [
            str(OVERNIGHT),
            "run",
            str(root),
            "--experiments",
            "2",
            "--quiet",
            "--tag",
            "orph",
            "--proposer",
            "random",
            "--judge",
            "greedy",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while not any(cmd.split()[1:2] == ["train.py"] for cmd in _run_processes(root).values()):  # training
            assert proc.poll() is None, proc.communicate()[0].decode(errors="replace")
            assert time.monotonic() < deadline, "the baseline never started training"
            time.sleep(0.05)
        alive = _run_processes(root)
        proc.kill()  # SIGKILL: the controller gets no chance to clean up
        proc.communicate(timeout=10)
        deadline = time.monotonic() + 3
        while _run_processes(root) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = _run_processes(root)
        assert not left, f"outlived the controller: {left} (the run was {alive})"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        _kill_all(_run_processes(root))


def test_a_resuming_controller_kills_the_tags_survivors_before_it_runs_anything(tmp_path):
    root = write_toy(tmp_path / "toy")
    Controller(root, RunConfig(tag="orph", proposer="random", judge="greedy", experiments=1)).run()  # the tag exists
    mark = tag_mark(root / ".overnight" / "orph")
    # Survivors that escaped a killed controller's reaper (their own session, re-parented away),
    # and a bystander: a run of another tag of the same repository, which must be left alone.
    survivors = [
        subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)"],
            start_new_session=True,
            env={**os.environ, TAG_MARKER_VAR: mark},
        )
        for _ in range(2)
    ]
    other = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        start_new_session=True,
        env={**os.environ, TAG_MARKER_VAR: tag_mark(root / ".overnight" / "other")},
    )
    try:
        time.sleep(0.3)  # their environment is in place once they have exec'd
        c = Controller(root, RunConfig(tag="orph", proposer="random", judge="greedy", experiments=2))
        # Constructed, not yet run: nothing of the resumed night has started, the survivors are dead.
        for s in survivors:
            assert s.wait(timeout=3) == -signal.SIGKILL
        assert other.poll() is None, "a process of another tag was killed"
        events = c.journal.events("orph", "survivors")
        assert len(events) == 1 and "killed 2 process(es)" in events[0]["message"], events
        c.run()  # and the resumed night goes on
        assert len(c.journal.experiments("orph")) == 2
    finally:
        for p in [*survivors, other]:
            p.kill()
            p.wait()
