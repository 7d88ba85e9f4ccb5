"""The proposer on a thread of its own, so asking overlaps training.

Every call to the proposer goes through this one thread, in order, so a proposer sees its
calls one at a time and never needs a lock:

- `ask` starts one `propose(ctx)` in the background (an LLM call, an agent, or Optuna's ask,
  whose constant liar counts the trials still running, so parallel slots get distinct
  configurations); `answer` hands the proposal back to the controller's thread, which
  journals it;
- `tell` queues `observe` (a decided experiment; the replay of a resumed night's history);
- `call` runs anything else (`rebase`) and waits for its result. The scheduler defers a
  queued candidate's rebase while a proposal is being made (`thinking`), so that wait is the
  rebase's own; a stale winner's rebase (rare) may wait for the proposal in progress;
- `close` finishes what was asked and closes the proposer.

A proposer error surfaces on the controller's thread at the next `answer`, `tell` or `call`.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from overnight.proposers import Context, Proposal, Proposer
from overnight.records import Experiment

T = TypeVar("T")


class Asker:
    def __init__(self, proposer: Proposer):
        self.proposer = proposer
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="overnight-proposer")
        self.asking: tuple[Future, Context] | None = None
        self.told: list[Future] = []
        self.closed = False

    def ask(self, ctx: Context) -> None:
        assert self.asking is None, "one proposal at a time"
        self.asking = (self.pool.submit(self.proposer.propose, ctx), ctx)

    @property
    def thinking(self) -> bool:
        """A proposal is being made (not merely waiting to be taken)."""
        return self.asking is not None and not self.asking[0].done()

    @property
    def idle(self) -> bool:
        """Nothing asked: no proposal being made nor waiting to be taken."""
        return self.asking is None

    def failed(self) -> bool:
        """The proposal asked for ended in an error (taken by `answer`, which raises it)."""
        return self.asking is not None and self.asking[0].done() and self.asking[0].exception() is not None

    def futures(self) -> list[Future]:
        """What to wait on for the proposal being made (none once it is done)."""
        return [self.asking[0]] if self.thinking else []

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

    def call(self, method: Callable[..., T], *args) -> T:
        """`method(*args)` (one of the proposer's) on the proposer's thread, after what was
        asked and told before it; its result, or its exception."""
        self._raise_errors()
        return self.pool.submit(method, *args).result()

    def _raise_errors(self) -> None:
        for f in [f for f in self.told if f.done()]:
            self.told.remove(f)
            f.result()

    def close(self) -> None:
        """Wait for the calls in progress (a proposal asked is finished, not torn), then close."""
        if self.closed:
            return
        self.closed = True
        self.pool.submit(self.proposer.close)
        self.pool.shutdown(wait=True)
        self._raise_errors()
