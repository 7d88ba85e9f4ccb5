"""Proposers called directly, and proposers that propose what a test says.

`ToyNight` is a night without a controller: a toy repository and a real journal holding a
kept baseline, from which it makes the contexts a proposer sees; a test records proposals
as experiments (any status), or keeps a change to move the incumbent. The scripted proposers
(`Scripted` with its steps, `Fixed`) put exact candidates into a real controller's night.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from overnight import gitops, knobs
from overnight.journal import Journal
from overnight.proposers import Context, Proposal, Proposer
from overnight.records import ExpStatus
from overnight.task_load import load_task

MAIN = 'if __name__ == "__main__":\n'


class ToyNight:
    """A task repository (the toy, usually) with a journal holding a kept baseline: makes
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
        self.incumbent_id, self.incumbent_files = bid, self.files
        self.said: list[tuple[str, str]] = []

    def ctx(self, notes: list[str] | None = None) -> Context:
        history = self.journal.experiments(self.tag)
        return Context(
            self.task,
            self.tag,
            self.state,
            self.files,
            next(e for e in history if e.id == self.incumbent_id),
            self.incumbent_files,
            history,
            self.seed,
            notes=notes or [],
            say=lambda kind, msg: self.said.append((kind, msg)),
        )

    def record(self, proposal, status=ExpStatus.DISCARDED, value=1.5, proposer: str = "p"):
        """`proposal` journaled as a child of the incumbent, decided with `status` and `value`."""
        parent = self.journal.experiment(self.incumbent_id)
        eid = self.journal.add_experiment(
            self.tag, parent.id, parent.commit_sha, proposal.description, proposer, proposal.params, proposal.edits
        )
        self.journal.set_status(eid, status, "test", value)
        return self.journal.experiment(eid)

    def keep(self, edits: dict[str, str], value: float = 1.1, params: dict | None = None):
        """A change of the incumbent's files committed and kept: the new incumbent."""
        parent = self.journal.experiment(self.incumbent_id)
        files = {**self.incumbent_files, **edits}
        commit = gitops.make_commit(self.root, parent.commit_sha, edits, "kept")
        eid = self.journal.add_experiment(self.tag, parent.id, parent.commit_sha, "kept", "test", params or {}, edits)
        self.journal.set_commit(eid, commit, gitops.diff(self.root, parent.commit_sha, commit))
        self.journal.set_status(eid, ExpStatus.KEPT, "test", value)
        self.incumbent_id, self.incumbent_files = eid, files
        return self.journal.experiment(eid)


class Scripted(Proposer):
    """Proposes exactly what the test says: each step maps the context to a Proposal."""

    name = "scripted"

    def __init__(self, *steps):
        self.steps = list(steps)
        self.observed: list[int] = []

    def propose(self, ctx):
        return self.steps.pop(0)(ctx)

    def observe(self, experiment, ctx):
        self.observed.append(experiment.id)


def set_knobs(**values):
    """A step that rewrites constants of the incumbent's train.py (net 0 lines)."""

    def step(ctx):
        src = ctx.incumbent_files["train.py"]
        return Proposal(f"set {values}", {"train.py": knobs.rewrite(src, values)}, dict(values))

    return step


def no_op(i: int):
    """An A/A candidate: a new value of an inert constant. The loss does not depend on it, but
    the toy's noise draw does (seed and configuration), so each one is a fresh measurement."""

    def step(ctx):
        src = ctx.incumbent_files["train.py"]
        if "AA_TRIAL" in knobs.find_constants(src):
            text = knobs.rewrite(src, {"AA_TRIAL": i})
        else:
            text = src.replace("\n" + MAIN, f"AA_TRIAL = {i}\n\n{MAIN}")
        return Proposal(f"no-op {i}", {"train.py": text}, {"kind": "aa"})

    return step


def pin_seed(**values):
    """A candidate that overrides OVERNIGHT_SEED before training: it ignores the seed."""

    def step(ctx):
        src = knobs.rewrite(ctx.incumbent_files["train.py"], values)
        src = src.replace(MAIN, MAIN + '    import os\n    os.environ["OVERNIGHT_SEED"] = "0"\n')
        return Proposal(f"set {values}, seed pinned", {"train.py": src}, dict(values))

    return step


def commit_change(root, path: str, old: str, new: str, message: str) -> None:
    """Edit a file of the task repository and commit it (the night starts from HEAD)."""
    file = root / path
    text = file.read_text()
    assert old in text, (path, old)
    file.write_text(text.replace(old, new))
    gitops.git(root, "commit", "-qam", message)


class Fixed(Proposer):
    """Proposes the given train.py texts (dedented), one per call, in order."""

    name = "fixed"

    def __init__(self, trains: list[str]):
        self.trains = list(trains)

    def propose(self, ctx):
        return Proposal("fixed", {"train.py": textwrap.dedent(self.trains.pop(0))}, {})


def controller_with(root: Path, n: int, proposer: str, opts, tag: str = "t", **kw):
    """A real controller (greedy judge, `n` experiments) whose proposer is made with `opts`
    (ProposerOptions: the llm, agent and hybrid proposers')."""
    from overnight.night.config import RunConfig
    from overnight.night.controller import Controller

    cfg = RunConfig(tag=tag, proposer=proposer, judge="greedy", experiments=n, proposer_options=opts, **kw)
    return Controller(root, cfg)


def night_seeds(journal: Journal, tag: str, n: int) -> list[int]:
    """The seeds of a journaled night's first `n` replicates (drawn from its secret)."""
    from overnight.night import seeding

    config = journal.tag_info(tag)["config"]
    return [seeding.seed(config.get(seeding.SECRET_KEY), i, config.get("seed", 0)) for i in range(n)]
