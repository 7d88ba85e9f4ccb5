"""Judges decide keep or discard. `make_judge(name)` builds one by its CLI name."""

from __future__ import annotations

from overnight.errors import OvernightError
from overnight.judges.base import Judge, Verdict

JUDGES = ("noise", "greedy")


def make_judge(name: str, settings=None) -> Judge:
    if name == "noise":
        from overnight.judges.noise import NoiseJudge

        return NoiseJudge(settings)
    if name == "greedy":
        from overnight.judges.greedy import GreedyJudge

        return GreedyJudge()
    raise OvernightError(f"unknown judge {name!r} — choose one of: {', '.join(JUDGES)}")


__all__ = ["Judge", "Verdict", "make_judge", "JUDGES"]
