"""Shared fixtures: real git repositories in tmp_path, a CLI runner, an isolated cache.

Nothing here is mocked: task repositories are real git repositories built with the same
plumbing the harness uses, and candidates are real Python programs run as subprocesses.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from overnight import gitops
from overnight.journal import ExpStatus, Journal
from overnight.proposers import Context
from overnight.task import load_task
from overnight.tasks import write_task

# A minimal task: train.py is the candidate, evaluate.py stands in for protected code.
DEFAULT_TOML = """\
[task]
command = "{python} train.py"
editable = ["train.py"]
protected = ["evaluate.py"]
budget = 1

[metric]
name = "score"
goal = "minimize"
source = "result-file"
"""

# Writes the harness-owned result file, as a task's protected evaluation would.
RESULT_HELPER = """\
import json, os

def report(**values):
    with open(os.environ["OVERNIGHT_RESULT"], "w") as f:
        json.dump(values, f)
"""


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Nothing a test runs may write to ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("OVERNIGHT_CACHE", str(tmp_path_factory.mktemp("overnight-cache")))
    yield
    mp.undo()


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


def git_out(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def make_task_repo(
    path: Path, train: str, toml: str | None = None, files: dict[str, str] | None = None, evaluate: str = RESULT_HELPER
) -> Path:
    """A committed task repository with the given train.py (dedented) and overnight.toml.

    `{python}` in the toml is replaced by this interpreter, so candidates run in the same
    environment as the tests whatever `python` means on PATH.
    """
    path.mkdir(parents=True, exist_ok=True)
    toml = DEFAULT_TOML if toml is None else toml
    (path / "overnight.toml").write_text(textwrap.dedent(toml).replace("{python}", sys.executable))
    (path / "train.py").write_text(textwrap.dedent(train))
    (path / "evaluate.py").write_text(evaluate)
    for name, text in (files or {}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(textwrap.dedent(text))
    gitops.init_repo(path, "init")
    return path


@pytest.fixture
def task_repo(tmp_path):
    """Factory: task_repo(train, toml=None, files=None) -> a committed task repo."""
    counter = iter(range(1000))

    def factory(
        train: str, toml: str | None = None, files: dict[str, str] | None = None, evaluate: str = RESULT_HELPER
    ) -> Path:
        return make_task_repo(tmp_path / f"task{next(counter)}", train, toml, files, evaluate)

    return factory


def write_toy(path: Path, env: dict[str, str] | None = None, rescore: bool = True) -> Path:
    """The built-in toy task, optionally with [task.env] values changed or without its
    protected re-score (which discards a candidate that pins OVERNIGHT_SEED), committed."""
    path.mkdir(parents=True, exist_ok=True)
    write_task("toy", path)
    if not rescore:
        spec = path / "overnight.toml"
        spec.write_text(
            "".join(row for row in spec.read_text().splitlines(keepends=True) if not row.startswith("rescore"))
        )
    for key, value in (env or {}).items():
        spec = path / "overnight.toml"
        lines = spec.read_text().splitlines(keepends=True)
        hits = [i for i, line in enumerate(lines) if line.startswith(f"{key} ")]
        assert hits, f"{key} not in the toy overnight.toml"
        lines[hits[0]] = f'{key} = "{value}"\n'
        spec.write_text("".join(lines))
    gitops.init_repo(path, "init")
    return path


@pytest.fixture
def toy_repo(tmp_path) -> Path:
    return write_toy(tmp_path / "toy")


@pytest.fixture
def cli():
    """cli(*args) -> click Result; stdout and stderr are kept apart."""
    from overnight.cli import main

    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=True)

    return invoke


class Night:
    """A toy repo with a journal holding a kept baseline, for proposers called directly: makes
    contexts, records results, and keeps what the proposer said (`ctx.say`)."""

    def __init__(self, root: Path, seed: int = 0, tag: str = "t"):
        self.root, self.seed, self.tag = root, seed, tag
        self.task = load_task(root)
        self.base = gitops.head(root)
        self.state = root / ".overnight"
        self.journal = Journal(self.state / "journal.db")
        self.journal.add_tag(tag, self.base, {})
        bid = self.journal.add_experiment(tag, None, self.base, "baseline", "baseline", {}, {})
        self.journal.set_commit(bid, self.base, "")
        self.journal.set_status(bid, ExpStatus.KEPT, "baseline", 1.2)
        self.files = gitops.read_files(root, self.base, self.task.editable)
        self.said: list[tuple[str, str]] = []

    def ctx(self, notes: list[str] | None = None) -> Context:
        history = self.journal.experiments(self.tag)
        return Context(
            self.task,
            self.tag,
            self.state,
            self.files,
            history[0],
            self.files,
            history,
            self.seed,
            notes=notes or [],
            say=lambda kind, msg: self.said.append((kind, msg)),
        )

    def record(self, proposal, status=ExpStatus.DISCARDED, value=1.5):
        eid = self.journal.add_experiment(
            self.tag, 1, self.base, proposal.description, "p", proposal.params, proposal.edits
        )
        self.journal.set_status(eid, status, "test", value)
        return self.journal.experiment(eid)


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
