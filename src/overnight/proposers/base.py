"""The proposer interface.

A proposer turns the history of the night into one new candidate: a description, the new
contents of the editable files it changes, and the parameters it chose. It never runs
anything and never knows where runs execute (ask and tell are separate, as in Optuna):

    proposal = proposer.propose(context)      # ask
    ...the controller journals, commits and runs it, the judge decides...
    proposer.observe(experiment, context)     # tell (a no-op unless the proposer learns)

Adding a strategy is one new file with a subclass and one line in `make_proposer`.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from overnight import knobs as knoblib
from overnight.records import Experiment
from overnight.task import TaskSpec

# params key of a proposal that failed validation: the controller journals it as REJECTED with
# this reason and never commits or runs it (a bad model reply is a failed proposal, not a crash).
REJECTED_KEY = "rejected"


@dataclass(frozen=True)
class Proposal:
    description: str
    edits: dict[str, str]  # editable path -> new full text
    params: dict[str, Any] = field(default_factory=dict)
    proposer: str | None = None  # who really proposed it (e.g. "optuna" as llm's fallback)

    @classmethod
    def failed(
        cls, description: str, reason: str, params: dict[str, Any] | None = None, proposer: str | None = None
    ) -> Proposal:
        return cls(description, {}, {**(params or {}), REJECTED_KEY: reason}, proposer)

    @property
    def rejected(self) -> str | None:
        return self.params.get(REJECTED_KEY)


@dataclass
class Context:
    """What a proposer may look at. Files are the editable files' texts."""

    task: TaskSpec
    tag: str
    state_dir: Path  # .overnight/ of the task: where a proposer may keep its own state
    baseline_files: dict[str, str]
    incumbent: Experiment
    incumbent_files: dict[str, str]
    history: list[Experiment]
    seed: int = 0
    notes: list[str] = field(default_factory=list)  # `overnight note` texts, oldest first
    # say(kind, message): a journal event the user also sees (e.g. "fallback"); no-op by default
    say: Callable[[str, str], None] = lambda kind, message: None
    # set on Ctrl-C / SIGTERM: a long proposal (an agent) gives up at once; the controller
    # journals nothing proposed after it. None: never stopped.
    stop: threading.Event | None = None


class Proposer(ABC):
    name: str = "proposer"
    # False: it can propose before the baseline has a result (a knob search), so the first
    # proposal is made while the baseline trains instead of after it.
    needs_baseline_result: bool = True

    @abstractmethod
    def propose(self, ctx: Context) -> Proposal:
        """Return the next candidate. Must not block on results of running experiments."""

    def observe(self, experiment: Experiment, ctx: Context) -> None:
        """Called when an experiment's final status is known (kept, discarded, failed). Must be
        idempotent: after a restart the controller replays every finished experiment."""

    def rebase(self, experiment: Experiment, ctx: Context) -> Proposal | None:
        """The same idea on top of `ctx.incumbent`, which changed since `experiment` was
        proposed (parallel slots). None: the controller merges the edits with git instead."""
        return None

    def close(self) -> None:
        """Release resources (files, connections) at the end of a run."""


class KnobProposer(Proposer):
    """Shared by the proposers that set knobs: the space comes from the BASELINE's files, so
    ranges stay fixed all night instead of drifting with each kept change."""

    needs_baseline_result = False

    def __init__(self) -> None:
        self._knobs: list[knoblib.Knob] | None = None

    def knob_space(self, ctx: Context) -> list[knoblib.Knob]:
        if self._knobs is None:
            self._knobs = knoblib.discover(ctx.baseline_files, ctx.task.knobs, metric=ctx.task.metric.name)
            if not self._knobs:
                from overnight.errors import OvernightError

                raise OvernightError(
                    f"no tunable UPPER_CASE constants found in {', '.join(ctx.task.editable)} — "
                    "declare ranges under [knobs] in overnight.toml or use another proposer"
                )
        return self._knobs

    def rebase(self, experiment: Experiment, ctx: Context) -> Proposal | None:
        """A knob proposal is a whole configuration: set the same values on the new incumbent
        (a line merge would conflict on every constant both changed)."""
        if experiment.proposer != self.name:
            return None
        space = {k.name for k in self.knob_space(ctx)}
        values = {n: v for n, v in experiment.params.items() if n in space}
        return self.apply(ctx, values, experiment.description.split(":", 1)[0]) if values else None

    def apply(self, ctx: Context, values: dict[str, Any], label: str) -> Proposal:
        """Rewrite the incumbent's files with `values` and describe what changed."""
        space = {k.name: k for k in self.knob_space(ctx)}
        edits: dict[str, str] = {}
        changes: list[str] = []
        for file in sorted({space[n].file for n in values}):
            source = ctx.incumbent_files[file]
            current = knoblib.find_constants(source)
            mine = {n: v for n, v in values.items() if space[n].file == file}
            new = knoblib.rewrite(source, mine)
            after = knoblib.find_constants(new)
            for name in sorted({n.split("[", 1)[0] for n in mine}):
                if current[name].value != after[name].value:
                    changes.append(f"{name} {current[name].text} -> {after[name].text}")
            if new != source:
                edits[file] = new
        what = ", ".join(changes) if changes else "no change (re-measure)"
        return Proposal(f"{label}: {what}", edits, dict(values))
