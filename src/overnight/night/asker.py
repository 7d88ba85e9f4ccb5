"""The proposer on a thread of its own, so asking overlaps training.

`ask` starts one `propose(ctx)` in the background (an LLM call, an agent, or Optuna's ask,
whose constant liar counts the trials still running, so parallel slots get distinct
configurations); `answer` hands the proposal back to the controller's thread, which journals
it. `tell` queues `observe` on the same thread, so the proposer sees its calls one at a time,
in order, and never needs a lock. A proposer error surfaces on the controller's thread at the
next `answer` or `tell`.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

from overnight.journal import Experiment
from overnight.proposers import Context, Proposal, Proposer


class Asker:
    def __init__(self, proposer: Proposer):
        self.proposer = proposer
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="overnight-proposer")
        self.asking: tuple[Future, Context] | None = None
        self.told: list[Future] = []

    def ask(self, ctx: Context) -> None:
        assert self.asking is None, "one proposal at a time"
        self.asking = (self.pool.submit(self.proposer.propose, ctx), ctx)

    def answer(self) -> tuple[Proposal, Context] | None:
        """The finished proposal and the context it was made in, or None while still thinking."""
        if self.asking is None or not self.asking[0].done():
            return None
        future, ctx = self.asking
        self.asking = None
        return future.result(), ctx

    def tell(self, exp: Experiment, ctx: Context) -> None:
        self._raise_errors()
        self.told.append(self.pool.submit(self.proposer.observe, exp, ctx))

    def _raise_errors(self) -> None:
        for f in [f for f in self.told if f.done()]:
            self.told.remove(f)
            f.result()

    def close(self) -> None:
        """Wait for the calls in progress (a proposal asked is finished, not torn), then close."""
        self.pool.submit(self.proposer.close)
        self.pool.shutdown(wait=True)
        self._raise_errors()
