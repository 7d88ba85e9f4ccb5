"""Proposers: where candidates come from. `make_proposer(name, options)` builds one by its CLI name."""

from __future__ import annotations

from overnight.errors import OvernightError
from overnight.proposers.base import Context, Proposal, Proposer
from overnight.proposers.options import ProposerOptions

PROPOSERS = ("optuna", "random", "llm", "agent", "hybrid")


def make_proposer(name: str, options: ProposerOptions | None = None) -> Proposer:
    # Imported lazily: a proposer's dependencies (Optuna, the LLM SDKs) load only when chosen.
    options = options or ProposerOptions()
    if name == "optuna":
        from overnight.proposers.optuna import OptunaProposer

        return OptunaProposer(start="incumbent" if options.knob_search == "local" else "global")
    if name == "random":
        from overnight.proposers.random import RandomProposer

        return RandomProposer()
    if name == "llm":
        from overnight.proposers.llm import LLMProposer

        return LLMProposer(options)
    if name == "agent":
        from overnight.proposers.agent import AgentProposer

        return AgentProposer(options)
    if name == "hybrid":
        from overnight.proposers.hybrid import HybridProposer

        return HybridProposer(options)
    raise OvernightError(f"unknown proposer {name!r} — choose one of: {', '.join(PROPOSERS)}")


__all__ = ["Context", "Proposal", "Proposer", "ProposerOptions", "make_proposer", "PROPOSERS"]
