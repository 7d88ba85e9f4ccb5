"""Random search over the knobs: the baseline every smarter proposer must beat."""

from __future__ import annotations

import random

from overnight.proposers.base import Context, KnobProposer, Proposal


class RandomProposer(KnobProposer):
    name = "random"

    def propose(self, ctx: Context) -> Proposal:
        # Seeded by (search seed, number of experiments so far): a resumed run proposes the
        # same sequence it would have, and two search seeds give two independent searches.
        rng = random.Random(f"{ctx.seed}:{len(ctx.history)}")
        values = {k.name: k.sample(rng) for k in self.knob_space(ctx)}
        return self.apply(ctx, values, "random")
