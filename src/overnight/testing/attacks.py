"""The adversarial suite's plumbing: a real night on the toy task whose candidates attack.

Each test writes one (or a few) attacking train.py files; `night()` runs the real controller
(real git, subprocesses, SQLite) with a proposer that proposes exactly those files, then
checks what every attack must leave behind: the attack decided and not kept, a reason on
record, the branch still at the baseline, results.tsv agreeing with the journal, the journal
intact, and no worktree left over. `heldout_toy` gives the toy a held-out slice of its own.
"""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

from overnight import gitops
from overnight.night.config import RunConfig
from overnight.night.controller import Controller
from overnight.proposers import Proposal, Proposer
from overnight.records import ExpStatus
from overnight.testing.gitutil import git_out

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
GREAT = 0.5  # far below the toy's best possible loss (1.0): only a cheat reports it


class Attacks(Proposer):
    name = "attacker"

    def __init__(self, trains: list[str]):
        self.trains = list(trains)

    def propose(self, ctx):
        body = self.trains.pop(0)
        if isinstance(body, dict):  # edits of any files (protected ones included)
            return Proposal("attack", body, {})
        return Proposal("attack", {"train.py": textwrap.dedent(body)}, {})


def night(root: Path, *trains, judge: str = "greedy", tag: str = "t", **cfg):
    """Run the baseline and then each attack; returns (controller, history)."""
    c = Controller(root, RunConfig(tag=tag, proposer="random", judge=judge, experiments=1 + len(trains), **cfg))
    c.proposer = Attacks(list(trains))
    c.run()
    history = c.journal.experiments(tag)
    check_intact(root, tag, history)
    return c, history


def night_allowing_keeps(root: Path, *trains):
    """Like `night`, without its 'nothing kept' check."""
    c = Controller(root, RunConfig(tag="t", proposer="random", judge="greedy", experiments=1 + len(trains)))
    c.proposer = Attacks(list(trains))
    c.run()
    return c, c.journal.experiments("t")


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


# --- a held-out slice for the toy ---------------------------------------------------------
# A protected script of the test's (same build/score protocol as `python -m overnight.heldout`):
# its "held-out loss" is the toy's true loss with the activation fixed, so a change of
# ACTIVATION gains on val_loss and not on the held-out slice, as a fit of the validation
# tokens would.

HELDOUT_TOY = '''"""Held-out slice of the toy (test): build OUT | score (tokens on stdin)."""
import json, os, sys
sys.path.insert(0, os.getcwd())
from evaluate import constants_of, true_loss
SECRET = b"TOY-HELDOUT-TOKENS" * 64
if sys.argv[1] == "build":
    open(sys.argv[2], "wb").write(SECRET)
else:
    if sys.stdin.buffer.read() != SECRET:
        sys.exit("error: the held-out tokens did not arrive on stdin")
    c = dict(constants_of(), ACTIVATION="relu")
    json.dump({"heldout_val_loss": true_loss(c)}, open(os.environ["OVERNIGHT_RESULT"], "w"))
'''
HELDOUT_TOML = '\n[heldout]\ncommand = "python heldout_toy.py"\nmax_gap = 0.01\nmin_share = 1\n'


def heldout_toy(toy_task, **kw) -> Path:
    """`toy_task(**kw)` (a factory of toy repositories) with the held-out slice above, committed."""
    root = toy_task(toml_extra=HELDOUT_TOML + kw.pop("toml_extra", ""), **kw)
    (root / "heldout_toy.py").write_text(HELDOUT_TOY)
    spec = root / "overnight.toml"
    spec.write_text(
        spec.read_text().replace(
            'protected = ["evaluate.py", "overnight.toml"]',
            'protected = ["evaluate.py", "overnight.toml", "heldout_toy.py"]',
        )
    )
    gitops.git(root, "add", "-A")
    gitops.git(root, "commit", "-qm", "held-out slice")  # the product's identity: a fresh HOME has none
    return root
