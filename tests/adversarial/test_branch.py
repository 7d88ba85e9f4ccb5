"""A user's commit on branch overnight/<tag> (issue 12, item 12): the harness moves the branch
only from a commit the journal put there; otherwise it stops with one line saying what
happened and how to go on, and the commit is still on the branch."""

from __future__ import annotations

import pytest

from overnight import gitops
from overnight.errors import OvernightError
from overnight.night.config import RunConfig
from overnight.night.controller import Controller
from overnight.proposers import Proposal, Proposer
from overnight.records import ExpStatus
from overnight.testing.attacks import HONEST, TOY_HEAD, Attacks, night
from overnight.testing.gitutil import git_out

REF = "refs/heads/overnight/t"
BETTER = TOY_HEAD.replace('ACTIVATION = "relu"', 'ACTIVATION = "gelu"') + HONEST  # the toy's loss drops


def controller(root, n: int, proposer: Proposer) -> Controller:
    c = Controller(root, RunConfig(tag="t", proposer="random", judge="greedy", experiments=n))
    c.proposer = proposer
    return c


def user_commit(root, on: str) -> str:
    """What a user does on the branch: a commit on top of `on`, the branch moved to it."""
    text = gitops.read_files(root, on, ["train.py"])["train.py"] + "# my own idea\n"
    sha = gitops.make_commit(root, on, {"train.py": text}, "my own work")
    gitops.git(root, "update-ref", REF, sha)
    return sha


def test_resume_stops_instead_of_dropping_a_users_commit(toy_task):
    root = toy_task()
    c, h = night(root)
    base = h[0].commit_sha
    mine = user_commit(root, base)
    with pytest.raises(OvernightError) as err:
        controller(root, 2, Attacks([BETTER])).run()
    msg = str(err.value)
    assert "\n" not in msg and "overnight/t" in msg and mine[:12] in msg and base in msg, msg
    assert gitops.rev_parse(root, REF) == mine  # not dropped
    # What the message says to do: keep the commit elsewhere, reset the branch, run again.
    git_out(root, "branch", "my-work", mine)
    git_out(root, "update-ref", REF, base)
    c = controller(root, 2, Attacks([BETTER]))
    c.run()
    h = c.journal.experiments("t")
    assert h[-1].status == ExpStatus.KEPT and gitops.rev_parse(root, REF) == h[-1].commit_sha
    assert gitops.rev_parse(root, "my-work") == mine


class CommitsMidNight(Proposer):
    """Proposes the better change; meanwhile the user commits on the branch."""

    name = "attacker"

    def __init__(self, root):
        self.root, self.mine = root, None

    def propose(self, ctx):
        self.mine = user_commit(self.root, ctx.incumbent.commit_sha)
        return Proposal("gelu", {"train.py": BETTER}, {})


def test_a_keep_during_the_night_stops_instead_of_dropping_it(toy_task):
    root = toy_task()
    p = CommitsMidNight(root)
    c = controller(root, 2, p)
    with pytest.raises(OvernightError, match="a commit overnight did not make"):
        c.run()
    assert p.mine and gitops.rev_parse(root, REF) == p.mine


def test_a_branch_left_behind_by_a_kill_still_moves(toy_task):
    """The journal's own older commit (a kill between the keep and the branch move): the
    branch moves on to the incumbent on resume; nothing the user made is in the way."""
    root = toy_task()
    c, h = night(root)
    c = controller(root, 2, Attacks([BETTER]))
    c.run()
    h = c.journal.experiments("t")
    assert h[-1].status == ExpStatus.KEPT
    gitops.git(root, "update-ref", REF, h[0].commit_sha)  # back at the baseline, as after the kill
    controller(root, 2, Attacks([])).run()
    assert gitops.rev_parse(root, REF) == h[-1].commit_sha
