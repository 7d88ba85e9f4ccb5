"""Two controllers on one tag: the second `overnight run` must not "resume" the live night.

Real processes: a night whose runs sleep through a long budget, then a second `overnight
run` on the same tag (named, and by default: the latest tag). The second exits at once with
one line naming the first's pid; the first is unharmed and stops cleanly on Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil

from overnight import gitops
from overnight.journal import Journal
from overnight.tasks import write_task
from overnight.testing.procs import CLI, run_procs, wait_for


def slow_toy(path: Path) -> Path:
    """The toy task whose runs sleep for the whole (long) budget: a night that stays live."""
    path.mkdir(parents=True)
    write_task("toy", path)
    spec = path / "overnight.toml"
    spec.write_text(
        spec.read_text()
        .replace('TOY_SLEEP = "0"', 'TOY_SLEEP = "budget"')
        .replace("timeout   = 30\n", "timeout   = 600\n")
    )
    gitops.init_repo(path, "init")
    return path


def descends_from(proc: psutil.Process, pid: int) -> bool:
    try:
        return pid in {a.pid for a in proc.parents()}
    except psutil.Error:
        return False


def test_second_controller_on_the_same_tag_exits_naming_the_first(tmp_path):
    root = slow_toy(tmp_path / "toy")
    first = subprocess.Popen(
        [*CLI, "run", str(root), "--tag", "t", "--quiet", "--budget", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: run_procs(root), 20, "the first night's baseline run")
        for extra in (["--tag", "t"], []):  # named, and the default (the latest tag)
            t0 = time.monotonic()
            second = subprocess.run(
                [*CLI, "run", str(root), "--quiet", "--budget", "60", *extra],
                capture_output=True,
                text=True,
                timeout=20,
            )
            assert second.returncode != 0
            assert time.monotonic() - t0 < 10
            lines = second.stderr.strip().splitlines()
            assert len(lines) == 1, second.stderr
            assert lines[0].startswith("error: ") and f"pid {first.pid}" in lines[0], lines[0]
            assert "changed by another process" not in lines[0]
        # read-only commands never take the lock
        status = subprocess.run([*CLI, "status", str(root), "--tag", "t"], capture_output=True, text=True, timeout=20)
        assert status.returncode == 0, status.stderr
        assert first.poll() is None, "the first night is unharmed"
        assert run_procs(root)
        first.send_signal(signal.SIGINT)
        out, err = first.communicate(timeout=20)
        assert first.returncode == 0, err
        assert "stopped" in out
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    j = Journal(root / ".overnight" / "journal.db")
    try:
        assert not j.events("t", "journal-tampered")
    finally:
        j.close()
    assert not run_procs(root)


def test_lock_dies_with_the_controller(tmp_path):
    """kill -9 of the controller frees the tag: the next `overnight run` resumes it."""
    root = slow_toy(tmp_path / "toy")
    first = subprocess.Popen(
        [*CLI, "run", str(root), "--tag", "t", "--quiet", "--budget", "60"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: run_procs(root), 20, "the first night's baseline run")
    finally:
        first.kill()
        first.wait()
    # What a kill -9 may leave is not this test's subject: killed until none is left, since the
    # first match may be the reaper, whose training child is exec'd just after the snapshot (CI
    # saw such a leftover taken for the resumed night's run, so SIGINT hit the new controller
    # before Python had installed any handler: rc -2, empty stderr).
    deadline = time.monotonic() + 20
    while (left := run_procs(root)) and time.monotonic() < deadline:
        for p in left:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(left, timeout=5)
    assert not run_procs(root), "the first night's runs outlived 20 s of kill -9"
    again = subprocess.Popen(
        [*CLI, "run", str(root), "--tag", "t", "--quiet", "--budget", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            lambda: [p for p in run_procs(root) if descends_from(p, again.pid)] or again.poll() is not None,
            20,
            "the resumed night's run",
        )
        assert again.poll() is None, again.communicate()
        again.send_signal(signal.SIGINT)
        # 45 s, not less: in the full suite on 2 busy cores the resumed night may still be
        # importing Optuna for its first proposal when the signal comes (seen: over 20 s).
        _, err = again.communicate(timeout=45)
        assert again.returncode == 0, err
    finally:
        if again.poll() is None:
            again.kill()
        again.communicate()  # reaps it and closes its pipes (else a ResourceWarning fails a later test)
    assert os.path.exists(root / ".overnight" / "journal.db")
