"""`llm`: a chat model reads the night so far and edits the code with SEARCH/REPLACE blocks.

One proposal is one conversation: the prompt (prompt.py), the model's reply, and, when the
reply's edit does not apply, touches a file it may not, or leaves Python that does not compile,
ONE follow-up carrying the error. A second bad reply is a failed proposal: journaled as
`rejected` with the reason, never committed, never run.

Endpoint faults (refused connections, timeouts, 429, 5xx, malformed or empty replies) are
retried with exponential backoff. When every try of one proposal fails, the night goes on with
the fallback proposer (`optuna`) and says so in the journal; every `probe_every` proposals the
endpoint gets one more try, and the model takes over again as soon as it answers.

Tokens in and out (and the cost, when prices are set) are summed per proposal into its
params under "usage"; status and report add them up (usage.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from overnight.errors import OvernightError
from overnight.proposers import edits, prompt
from overnight.proposers.base import Context, Proposal, Proposer
from overnight.proposers.llm_client import Client, EndpointFault, EndpointRefused, Reply
from overnight.proposers.options import ProposerOptions
from overnight.records import EventKind, Experiment

MAX_BACKOFF = 60.0
RETRY_PROMPT = (
    "Your reply could not be used: {error}\n\nReply again with the corrected change: a short "
    "description, then SEARCH/REPLACE blocks that match the current files exactly."
)


class LLMProposer(Proposer):
    name = "llm"

    def __init__(self, opts: ProposerOptions, sleep: Callable[[float], None] = time.sleep):
        opts.check(self.name)
        self.opts = opts
        self.sleep = sleep  # injected so fault tests do not wait out real backoffs
        self.client = Client(opts)  # checks the key now: a missing one fails before the night starts
        self._fallback = None
        self.on_fallback = False
        self.since_fallback = 0
        self.answered = 0  # successful calls; a refusal before the first one is a configuration error

    # --- ask ---------------------------------------------------------------------------------
    def propose(self, ctx: Context) -> Proposal:
        proposal = self.propose_llm(ctx, "llm")
        return proposal if proposal is not None else self.fallback_proposal(ctx)

    def propose_llm(self, ctx: Context, mode: str) -> Proposal | None:
        """A proposal from the model (possibly a rejected one), or None while the endpoint is down."""
        if self.on_fallback:
            self.since_fallback += 1
            if self.since_fallback % self.opts.probe_every:
                return None
        system, user = prompt.build(ctx, mode)
        messages = [{"role": "user", "content": user}]
        usage = {
            "model": self.opts.model,
            "calls": 0,
            "tokens_in": 0,
            "tokens_out": 0,
            "cost_usd": None,
            "prompt_chars": prompt.size(system, user),
        }
        replies: list[str] = []
        description, error = "llm proposal", ""
        for attempt in range(2):
            reply = self._call(system, messages, ctx)
            if reply is None:
                if attempt == 0:
                    return None
                error += " (no corrected reply: the endpoint failed)"
                break
            self._count(usage, reply)
            replies.append(reply.text)
            try:
                description, blocks = edits.parse(reply.text)
                new = edits.apply(blocks, ctx.incumbent_files, ctx.task.editable, ctx.task.protected)
            except edits.EditError as exc:
                error = str(exc)
                messages += [
                    {"role": "assistant", "content": reply.text},
                    {"role": "user", "content": RETRY_PROMPT.format(error=error)},
                ]
                continue
            params = {"usage": usage, "replies": self._save(ctx, replies)}
            return Proposal(description, new, params, proposer=self.name)
        params = {"usage": usage, "replies": self._save(ctx, replies)}
        tries = "after one retry" if len(replies) > 1 else "once"
        return Proposal.failed(description, f"edit rejected {tries}: {error}", params, proposer=self.name)

    def _call(self, system: str, messages: list[dict], ctx: Context) -> Reply | None:
        tries = 1 if self.on_fallback else 1 + self.opts.retries  # a probe is one try
        last: Exception | None = None
        for attempt in range(tries):
            try:
                reply = self.client.chat(system, messages)
            except EndpointRefused as exc:
                if not self.answered and not self.on_fallback:
                    raise OvernightError(
                        f"the model endpoint refused the request ({exc}) — check --model, --base-url and the API key"
                    ) from None
                last = exc
                break  # waiting will not change a refusal
            except EndpointFault as exc:
                last = exc
                ctx.say(EventKind.ENDPOINT, f"{self.name}: try {attempt + 1}/{tries} failed: {exc}")
                if attempt + 1 < tries:
                    self.sleep(min(self.opts.backoff * 2**attempt, MAX_BACKOFF))
                continue
            self.answered += 1
            if self.on_fallback:
                self.on_fallback = False
                ctx.say(EventKind.FALLBACK_END, f"{self.name}: the endpoint answers again; the model proposes again")
            return reply
        if not self.on_fallback:
            self.on_fallback, self.since_fallback = True, 0
            ctx.say(
                EventKind.FALLBACK,
                f"{self.name}: the endpoint failed {tries} time(s) ({last}); continuing with "
                f"optuna, trying the endpoint again every {self.opts.probe_every} proposals",
            )
        return None

    def _count(self, usage: dict, reply: Reply) -> None:
        usage["calls"] += 1
        usage["tokens_in"] += reply.tokens_in
        usage["tokens_out"] += reply.tokens_out
        cost = self.opts.cost(reply.tokens_in, reply.tokens_out)
        if cost is not None:
            usage["cost_usd"] = (usage["cost_usd"] or 0.0) + cost
        if reply.estimated:
            usage["estimated"] = True

    def _save(self, ctx: Context, replies: list[str]) -> str:
        """The raw replies, for `overnight show` readers who wonder what the model said."""
        path = Path(ctx.state_dir) / ctx.tag / "llm" / f"{len(ctx.history) + 1:04d}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n\n---- next reply ----\n\n".join(replies))
        return str(path.relative_to(ctx.state_dir))

    # --- the fallback ----------------------------------------------------------------------------
    def fallback(self, ctx: Context):
        if self._fallback is None:
            from overnight.proposers.optuna import OptunaProposer

            self._fallback = OptunaProposer()
            for exp in ctx.history:  # it learns the night so far (observe is idempotent)
                if exp.status.final and self._mine(exp):
                    self._fallback.observe(exp, ctx)
        return self._fallback

    def _mine(self, exp: Experiment) -> bool:
        """What the fallback study may be told: the baseline and its own trials (a hybrid's
        tuning trials live in other studies and must not be mistaken for them)."""
        return exp.parent_id is None or exp.params.get("fallback_for") == self.name

    def fallback_proposal(self, ctx: Context) -> Proposal:
        try:
            p = self.fallback(ctx).propose(ctx)
        except OvernightError as exc:
            raise OvernightError(f"the model endpoint is down and optuna cannot stand in: {exc}") from None
        return Proposal(p.description, p.edits, {**p.params, "fallback_for": self.name}, proposer="optuna")

    # --- tell --------------------------------------------------------------------------------------
    def observe(self, experiment: Experiment, ctx: Context) -> None:
        fallback_trial = experiment.params.get("fallback_for") == self.name
        if fallback_trial or (self._fallback is not None and self._mine(experiment)):
            self.fallback(ctx).observe(experiment, ctx)

    def close(self) -> None:
        if self._fallback is not None:
            self._fallback.close()
        self.client.close()
