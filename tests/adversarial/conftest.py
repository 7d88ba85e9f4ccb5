"""The adversarial suite's plumbing: a real night on the toy task whose candidates attack.

Each test writes one (or a few) attacking train.py files; `night()` runs the real controller
(real git, subprocesses, SQLite) with a proposer that proposes exactly those files, then
checks what every attack must leave behind: the attack decided and not kept, a reason on
record, the branch still at the baseline, results.tsv agreeing with the journal, the journal
intact, and no worktree left over.
"""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

import pytest
from conftest import git_out

from overnight import gitops
from overnight.journal import ExpStatus
from overnight.night.controller import Controller, RunConfig
from overnight.proposers import Proposal, Proposer
from overnight.tasks import write_task

# The toy's own train.py header: the protected evaluation and the constants as shipped.
TOY_HEAD = """\
from evaluate import train_and_evaluate
LEARNING_RATE = 0.01
WEIGHT_DECAY = 0.1
WARMUP_RATIO = 0.5
WIDTH = 64
DEPTH = 4
ACTIVATION = "relu"
USE_NORM = False
constants = {k: v for k, v in dict(globals()).items() if k.isupper()}
"""
HONEST = "train_and_evaluate(constants)\n"


class Attacks(Proposer):
    name = "attacker"

    def __init__(self, trains: list[str]):
        self.trains = list(trains)

    def propose(self, ctx):
        body = self.trains.pop(0)
        if isinstance(body, dict):  # edits of any files (protected ones included)
            return Proposal("attack", body, {})
        return Proposal("attack", {"train.py": textwrap.dedent(body)}, {})


def toy(path: Path, toml_extra: str = "", task_extra: str = "", noise: str = "0", timeout: int = 30) -> Path:
    """The built-in toy task (noise-free by default), with lines added to its overnight.toml."""
    path.mkdir(parents=True, exist_ok=True)
    write_task("toy", path)
    spec = path / "overnight.toml"
    text = spec.read_text().replace('TOY_NOISE = "0.002"', f'TOY_NOISE = "{noise}"')
    text = text.replace("timeout   = 30\n", f"timeout   = {timeout}\n" + task_extra)
    spec.write_text(text + toml_extra)
    gitops.init_repo(path, "init")
    return path


def night(root: Path, *trains, judge: str = "greedy", tag: str = "t", **cfg):
    """Run the baseline and then each attack; returns (controller, history)."""
    c = Controller(root, RunConfig(tag=tag, proposer="random", judge=judge, experiments=1 + len(trains), **cfg))
    c.proposer = Attacks(list(trains))
    c.run()
    history = c.journal.experiments(tag)
    check_intact(root, tag, history)
    return c, history


def check_intact(root: Path, tag: str, history) -> None:
    """No attack kept, the branch at the baseline, results.tsv == journal, journal whole."""
    base = history[0]
    assert base.status == ExpStatus.KEPT, (base.status, base.reason)
    for e in history[1:]:
        assert e.status.final and e.status != ExpStatus.KEPT, (e.id, e.status, e.reason)
        assert e.reason, (e.id, e.status)
    assert gitops.rev_parse(root, f"overnight/{tag}") == base.commit_sha
    rows = (root / ".overnight" / tag / "results.tsv").read_text().splitlines()
    assert len(rows) == 1 + len(history)
    assert [r.split("\t")[3] for r in rows[1:]] == ["keep"] + [
        "discard" if e.status == ExpStatus.DISCARDED else "crash" for e in history[1:]
    ]
    con = sqlite3.connect(root / ".overnight" / "journal.db")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()
    assert len(git_out(root, "worktree", "list").splitlines()) == 1


@pytest.fixture
def toy_task(tmp_path):
    counter = iter(range(100))

    def factory(**kw) -> Path:
        return toy(tmp_path / f"toy{next(counter)}", **kw)

    return factory
