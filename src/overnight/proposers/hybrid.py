"""`hybrid`: the model makes structural moves, Optuna tunes the numbers in between.

Policy (`--hybrid-trials K`, default 4): one LLM move, then K Optuna trials on the numeric and
categorical constants of the current best, then the next LLM move, and so on. Why: a model is
good at ideas (a different schedule, a new normalisation) and poor at finding the best learning
rate for them by guessing, while TPE is the opposite. A structural change shifts where the good
constants are, so each tuning phase searches around the current best's values (ranges inferred
from ITS constants, not the baseline's), and its first trial is the current best itself.

Tuning state lives in one Optuna study per anchor (the current best's commit when a phase
starts), named `<tag>.hybrid.<sha>` in `.overnight/optuna.db`. When an LLM move is discarded the
anchor is unchanged, so the next phase continues the same study instead of starting over. The
schedule is read from the journal (the `move` of each experiment), so a resumed run picks up
exactly where it stopped. While the endpoint is down the tuner makes every move.
"""

from __future__ import annotations

from dataclasses import replace

from overnight import gitops
from overnight.errors import OvernightError
from overnight.proposers.base import Context, Proposal, Proposer
from overnight.proposers.llm import LLMProposer
from overnight.proposers.options import ProposerOptions
from overnight.proposers.optuna import OptunaProposer
from overnight.records import Experiment, ExpStatus

MOVE, ANCHOR = "move", "anchor"


class HybridProposer(Proposer):
    name = "hybrid"

    def __init__(self, opts: ProposerOptions):
        opts.check(self.name)
        self.trials = opts.hybrid_trials
        self.llm = LLMProposer(opts)
        self._tuners: dict[str, OptunaProposer] = {}

    @staticmethod
    def phase(history: list[Experiment]) -> list[Experiment]:
        """The tuning moves since the last LLM move."""
        moves = [e for e in history if e.params.get(MOVE)]
        last_llm = max((i for i, e in enumerate(moves) if e.params[MOVE] == "llm"), default=None)
        return [] if last_llm is None else [e for e in moves[last_llm + 1 :] if e.params[MOVE] == "tune"]

    def propose(self, ctx: Context) -> Proposal:
        history = [e for e in ctx.history if e.params.get(MOVE)]
        tunes = self.phase(ctx.history)
        llm_due = not any(e.params[MOVE] == "llm" for e in history) or len(tunes) >= self.trials
        if llm_due:
            proposal = self.llm.propose_llm(ctx, "hybrid")
            if proposal is not None:
                return replace(proposal, params={**proposal.params, MOVE: "llm"}, proposer="hybrid:llm")
        # The anchor of the running phase, or the current best when a phase starts.
        anchor = tunes[-1].params[ANCHOR] if tunes and not llm_due else ctx.incumbent.commit_sha
        try:
            return self._tune(ctx, anchor)
        except OvernightError as exc:
            if not llm_due:  # nothing numeric to tune here: let the model move instead
                proposal = self.llm.propose_llm(ctx, "hybrid")
                if proposal is not None:
                    return replace(proposal, params={**proposal.params, MOVE: "llm"}, proposer="hybrid:llm")
            raise OvernightError(f"hybrid: the model endpoint is down and Optuna cannot stand in ({exc})") from None

    def _tune(self, ctx: Context, anchor: str) -> Proposal:
        tuner, actx = self._tuner(ctx, anchor)
        try:
            p = tuner.propose(actx)
        except KeyError as exc:  # the current best lost a constant of the anchor: start a new phase
            if anchor == ctx.incumbent.commit_sha:
                raise OvernightError(f"hybrid: constant {exc} vanished from the current best — retry") from None
            return self._tune(ctx, ctx.incumbent.commit_sha)
        return Proposal(p.description, p.edits, {**p.params, MOVE: "tune", ANCHOR: anchor}, proposer="hybrid:optuna")

    def _tuner(self, ctx: Context, anchor: str) -> tuple[OptunaProposer, Context]:
        files = gitops.read_files(ctx.task.root, anchor, ctx.task.editable)
        mine = [e for e in ctx.history if e.params.get(ANCHOR) == anchor]
        actx = replace(
            ctx,
            tag=f"{ctx.tag}.hybrid.{anchor[:12]}",
            baseline_files=files,
            history=mine,
            incumbent_files=ctx.incumbent_files,
        )
        tuner = self._tuners.get(anchor)
        if tuner is None:
            tuner = self._tuners[anchor] = OptunaProposer(start="global")  # its K trials: TPE, as documented
            tuner.knob_space(actx)  # raises when the anchor has nothing to tune
            start = next(
                (
                    e
                    for e in ctx.history
                    if e.commit_sha == anchor and e.value is not None and e.status == ExpStatus.KEPT
                ),
                None,
            )
            if start is not None:  # the anchor itself is the study's first finished trial
                tuner.observe(replace(start, parent_id=None, params={}), actx)
        return tuner, actx

    def observe(self, experiment: Experiment, ctx: Context) -> None:
        if experiment.params.get(MOVE) == "tune":
            tuner, actx = self._tuner(ctx, experiment.params[ANCHOR])
            tuner.observe(experiment, actx)
        else:
            self.llm.observe(experiment, ctx)

    def close(self) -> None:
        for tuner in self._tuners.values():
            tuner.close()
        self.llm.close()
