"""`[task] setup`: run once per `overnight run`, before the first run, outside every run's clock.

Real parts: the toy task in a git repository, the real controller and CLI, real subprocesses.
The setup command records when and where it ran; it sleeps longer than a run's hard timeout,
which it is not bound by.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from overnight import gitops
from overnight.night.config import RunConfig
from overnight.night.controller import Controller
from overnight.night.tags import open_journal
from overnight.task import TaskSpecError
from overnight.task_load import load_task
from overnight.tasks import write_task

CLI = [sys.executable, "-m", "overnight"]


def single_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def toy_with_setup(path: Path, setup: str, extra: str = "") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    write_task("toy", path)
    spec = path / "overnight.toml"
    text = spec.read_text()
    assert "timeout   = 30\n" in text
    spec.write_text(text.replace("timeout   = 30\n", f"timeout   = 5\nsetup = {setup!r}\n{extra}"))
    gitops.init_repo(path, "init")
    return path


def test_setup_runs_once_before_the_runs_and_outside_their_timeout(tmp_path):
    log = tmp_path / "setup.log"
    # 6 s: longer than a run's hard timeout (5 s), which does not apply to the setup.
    root = toy_with_setup(tmp_path / "toy", f"sleep 6 && echo $PWD $(date +%s.%N) >> {log}")
    c = Controller(root, RunConfig(tag="t", proposer="random", judge="greedy", experiments=2))
    c.run()
    lines = log.read_text().splitlines()
    assert len(lines) == 1
    where, when = lines[0].split()
    assert Path(where).parent == root / ".overnight" / "worktrees" and not Path(where).exists()  # removed after
    h = c.journal.experiments("t")
    runs = [r for e in h for r in e.runs]
    assert len(h) == 2 and all(r.status == "ok" for r in runs)
    assert min(r.started for r in runs) >= float(when)  # every run after it
    assert all(r.wall_seconds < 5 for r in runs)  # its 6 s are in no run's clock
    events = c.journal.events("t", "setup")
    assert len(events) == 1 and "done in" in events[0]["message"]
    assert (root / ".overnight" / "t" / "setup.txt").is_file()  # its output, for a failure's reader
    c.journal.close()
    # A resumed night runs it again (the caches it fills may have gone since); still once.
    again = Controller(root, RunConfig(tag="t", proposer="random", judge="greedy", experiments=3))
    again.run()
    assert len(log.read_text().splitlines()) == 2
    assert len(again.journal.experiments("t")) == 3
    again.journal.close()


def test_a_failing_setup_stops_the_night_in_one_line_before_any_run(tmp_path):
    root = toy_with_setup(tmp_path / "toy", "echo the data server is down >&2; exit 3")
    proc = subprocess.run(
        [*CLI, "run", str(root), "--tag", "t", "--quiet", "--experiments", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    line = single_error_line(proc.stderr)
    assert "setup command failed (exit 3: the data server is down)" in line and "setup.txt" in line
    j = open_journal(root)
    try:
        assert not [r for e in j.experiments("t") for r in e.runs]
    finally:
        j.close()


def test_a_setup_past_its_own_timeout_is_stopped(tmp_path):
    root = toy_with_setup(tmp_path / "toy", "sleep 60", extra="setup_timeout = 1\n")
    t0 = time.monotonic()
    proc = subprocess.run(
        [*CLI, "run", str(root), "--tag", "t", "--quiet", "--experiments", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and time.monotonic() - t0 < 30
    assert "ran past task.setup_timeout (1 s)" in single_error_line(proc.stderr)


@pytest.mark.parametrize(
    "line,expected",
    [
        ('setup = ""', "task.setup must be a command line"),
        ("setup = 3", "task.setup must be a command line"),
        ('setup = "x"\nsetup_timeout = 0', "task.setup_timeout"),
    ],
)
def test_bad_setup_settings_are_one_line(tmp_path, line, expected):
    root = tmp_path / "toy"
    root.mkdir()
    write_task("toy", root)
    spec = root / "overnight.toml"
    spec.write_text(spec.read_text().replace("timeout   = 30\n", f"timeout   = 30\n{line}\n"))
    with pytest.raises(TaskSpecError) as exc:
        load_task(root)
    assert expected in str(exc.value) and "\n" not in str(exc.value)


def test_the_built_in_tasks_declare_theirs(tmp_path):
    write_task("nanogpt", tmp_path)
    assert load_task(tmp_path).setup == "python prepare.py --setup"
