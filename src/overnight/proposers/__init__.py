"""Proposers: where candidates come from. `make_proposer(name)` builds one by its CLI name."""

from __future__ import annotations

from overnight.errors import OvernightError
from overnight.proposers.base import Context, Proposal, Proposer

PROPOSERS = ("optuna", "random")


def make_proposer(name: str) -> Proposer:
    # Imported lazily: a proposer's dependencies are loaded only when it is chosen.
    if name == "optuna":
        from overnight.proposers.optuna import OptunaProposer
        return OptunaProposer()
    if name == "random":
        from overnight.proposers.random import RandomProposer
        return RandomProposer()
    raise OvernightError(f"unknown proposer {name!r} — choose one of: {', '.join(PROPOSERS)}")


__all__ = ["Context", "Proposal", "Proposer", "make_proposer", "PROPOSERS"]
