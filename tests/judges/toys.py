"""Scripted candidates on the real toy task, for the noise judge's end-to-end tests.

The toy's loss is a known function of the constants in train.py plus seeded Gaussian noise
(sd TOY_NOISE, 0.002 by default): relu->gelu is 0.02 better, USE_NORM=True 0.01 better.
"""

from __future__ import annotations

from overnight import gitops, knobs
from overnight.proposers import Proposal, Proposer

MAIN = 'if __name__ == "__main__":\n'


class Scripted(Proposer):
    """Proposes exactly what the test says: each step maps the context to a Proposal."""

    name = "scripted"

    def __init__(self, *steps):
        self.steps = list(steps)

    def propose(self, ctx):
        return self.steps.pop(0)(ctx)


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
