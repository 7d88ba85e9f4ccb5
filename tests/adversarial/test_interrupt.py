"""Ctrl-C / SIGTERM stop `overnight verify`, `overnight ablate` and an agent's proposal at once,
leaving nothing behind: no training or agent process, no extra `git worktree list` entry.

Real processes: the CLI as a subprocess on a toy night, signalled while a run (or the agent)
is in progress.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from overnight.night.config import RunConfig
from overnight.night.controller import Controller
from overnight.testing.agents import FAKE_AGENT
from overnight.testing.attacks import HONEST, TOY_HEAD, Attacks
from overnight.testing.gitutil import git_out
from overnight.testing.procs import CLI, run_procs, wait_for
from overnight.testing.toy import quiet_toy


def worktrees(root: Path) -> int:
    return len(git_out(root, "worktree", "list").splitlines())


def leftovers(marker: str) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter():
        try:
            if marker in " ".join(p.cmdline()):
                out.append(p)
        except (psutil.Error, OSError):
            continue
    return out


@pytest.fixture(scope="module")
def kept_night(tmp_path_factory) -> Path:
    """A toy night with one kept change (gelu), then runs made slow for what comes next:
    the working tree's overnight.toml (read by verify; the runs' protected copy is the
    committed one) sleeps a long budget."""
    root = quiet_toy(tmp_path_factory.mktemp("interrupt") / "toy")
    c = Controller(root, RunConfig(tag="t", proposer="random", judge="greedy", experiments=2))
    c.proposer = Attacks([TOY_HEAD.replace('"relu"', '"gelu"') + HONEST])
    c.run()
    c.journal.close()
    spec = root / "overnight.toml"
    spec.write_text(
        spec.read_text()
        .replace('TOY_SLEEP = "0"', 'TOY_SLEEP = "budget"')
        .replace("budget    = 1\n", "budget    = 120\n")
        .replace("timeout   = 30\n", "timeout   = 600\n")
    )
    return root


@pytest.mark.parametrize(
    "command, sig", [("verify", signal.SIGINT), ("verify", signal.SIGTERM), ("ablate", signal.SIGINT)]
)
def test_verify_and_ablate_stop_at_once(kept_night, command, sig):
    root = kept_night
    proc = subprocess.Popen(
        [*CLI, command, str(root), "--tag", "t", "--runs", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: run_procs(root) or proc.poll() is not None, 20, f"{command}'s first run")
        assert proc.poll() is None, proc.communicate()
        assert worktrees(root) == 2  # the run's own, while it runs
        t0 = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=15)
        assert time.monotonic() - t0 < 8, "stops at once, not after the run"
        assert proc.returncode != 0
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "stopped" in lines[0], err
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()  # reaps it and closes its pipes
    time.sleep(0.3)
    assert not run_procs(root), "the training process survived"
    assert worktrees(root) == 1, git_out(root, "worktree", "list")


def test_agent_stops_on_the_first_ctrl_c(tmp_path):
    root = quiet_toy(tmp_path / "toy")
    marker = f"{FAKE_AGENT} sleep {root}/"  # the agent (and its shell), not the controller
    cmd = f"{sys.executable} {FAKE_AGENT} sleep {{prompt_file}} {{description_file}}"
    proc = subprocess.Popen(
        [
            *CLI,
            "run",
            str(root),
            "--tag",
            "t",
            "--quiet",
            "--proposer",
            "agent",
            "--agent-cmd",
            cmd,
            "--agent-timeout",
            "120",
            "--experiments",
            "3",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: leftovers(marker) or proc.poll() is not None, 25, "the agent")
        assert proc.poll() is None, proc.communicate()
        # The agent's temporary checkout (and the baseline's re-score check, if it still runs).
        assert worktrees(root) in (2, 3), git_out(root, "worktree", "list")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
        assert time.monotonic() - t0 < 8, "stops at once, not after --agent-timeout"
        assert proc.returncode == 0, err
        assert "stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()  # reaps it and closes its pipes
    time.sleep(0.3)
    assert not leftovers(marker), "the agent survived"
    assert worktrees(root) == 1, git_out(root, "worktree", "list")
