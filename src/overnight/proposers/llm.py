"""`llm`: a chat model reads the night so far and edits the code with SEARCH/REPLACE blocks.

One proposal is one conversation: the prompt (prompt.py), the model's reply, and, when the
reply's edit does not apply, touches a file it may not, or leaves Python that does not compile,
ONE follow-up carrying the error. A second bad reply is a failed proposal: journaled as
`rejected` with the reason, never committed, never run.

Endpoint faults (refused connections, timeouts, 429, 5xx, malformed or empty replies) are
retried with exponential backoff. When every try of one proposal fails, the night goes on with
the fallback proposer (`optuna`) and says so in the journal; every `probe_every` proposals the
endpoint gets one more try, and the model takes over again as soon as it answers.

A model that cannot follow the format is noticed: after `unusable_after` proposals in a row
whose edit could not be used, the night says so once (with the last reason) and optuna stands in,
the model asked again every `probe_every` proposals (its reply journaled like any other) until
an edit of it applies.

The prompt is sized to the model's context window (window.py, prompt.fit), and the edit asked
for as JSON where the server takes a schema (llm_reply.py; `reply_format` auto), as SEARCH/REPLACE
text where it refuses one.

Tokens in and out (and the cost, when prices are set) are summed per proposal into its
params under "usage"; status and report add them up (usage.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from overnight.errors import OvernightError
from overnight.proposers import edits, llm_reply, prompt, window
from overnight.proposers.base import Context, Proposal, Proposer
from overnight.proposers.llm_client import Client, EndpointFault, EndpointRefused, Reply
from overnight.proposers.options import ProposerOptions
from overnight.records import EventKind, Experiment

MAX_BACKOFF = 60.0
RETRY_PROMPT = {
    "text": (
        "Your reply could not be used: {error}\n\nReply again with the corrected change: a short "
        "description, then SEARCH/REPLACE blocks that match the current files exactly."
    ),
    "json": (
        "Your reply could not be used: {error}\n\nReply again with the corrected change as the JSON "
        "object: its description and edits whose search text matches the current files exactly."
    ),
}


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
        # What is asked for now: a JSON schema as OpenAI defines it, then llama-cpp-python's own
        # field (json_object with a schema), then text, each after the server refused the one before.
        self.format = "text" if opts.reply_format == "text" else llm_reply.FLAVOURS[0]
        self.window: window.Window | None = None
        self.sized = False  # the window looked up (once a night: the first proposal)
        self.unusable = 0  # proposals in a row whose edit could not be used
        self.benched = False  # ... reached unusable_after: optuna stands in, the model probed

    # --- ask ---------------------------------------------------------------------------------
    def propose(self, ctx: Context) -> Proposal:
        proposal = self.propose_llm(ctx, "llm")
        return proposal if proposal is not None else self.fallback_proposal(ctx)

    def propose_llm(self, ctx: Context, mode: str) -> Proposal | None:
        """A proposal from the model (possibly a rejected one), or None while the endpoint is down
        or the model is benched between probes."""
        if self.on_fallback or self.benched:
            self.since_fallback += 1
            if self.since_fallback % self.opts.probe_every:
                return None
        proposal = self._converse(ctx, mode)
        if proposal is not None:
            self._tally(ctx, proposal)
        return proposal

    def _prompt(self, ctx: Context, mode: str) -> tuple[str, str, dict]:
        """(system, user, what usage records of it), sized to the model's window when it has one."""
        if not self.sized:
            self.sized = True
            url = self.opts.base_url or os.environ.get("OPENAI_BASE_URL")
            self.window = window.resolve(self.opts.context_tokens, url, self.opts.model, self.opts.max_tokens)
            if self.window is not None:
                said = f"{self.name}: prompts sized to the model's window: {self.window.describe()}"
                ctx.say(EventKind.PROMPT_WINDOW, said)
        if self.window is None:
            system, user = prompt.build(ctx, mode, reply_format=self.asking)
            return system, user, {}
        system, user, shortened = prompt.fit(ctx, mode, self.window.first_prompt_chars, reply_format=self.asking)
        est = window.tokens(prompt.size(system, user))
        return system, user, {"window": self.window.tokens, "prompt_tokens_est": est, "shortened": shortened}

    def _converse(self, ctx: Context, mode: str) -> Proposal | None:
        """One conversation: the prompt, the reply, one retry carrying the error."""
        started = time.monotonic()
        system, user, sized = self._prompt(ctx, mode)
        messages = [{"role": "user", "content": user}]
        usage = {"model": self.opts.model, "calls": 0, "tokens_in": 0, "tokens_out": 0, "cost_usd": None}
        usage |= {"prompt_chars": prompt.size(system, user), "format": self.format, **sized}
        replies: list[str] = []
        description, error = "llm proposal", ""
        for attempt in range(2):
            asked = self.format
            reply = self._call(system, messages, ctx)
            if reply is None:
                if attempt == 0:
                    return None
                error += " (no corrected reply: the endpoint failed)"
                break
            if self.format != asked:  # the server refused the schema: the same prompt, the next way
                return self._converse(ctx, mode)
            self._count(usage, reply)
            replies.append(reply.text)
            try:
                description, blocks = llm_reply.parse_reply(reply.text)
                new = edits.apply(blocks, ctx.incumbent_files, ctx.task.editable, ctx.task.protected)
            except edits.EditError as exc:
                error = str(exc)
                messages += self._retry(system, user, reply.text, error)
                continue
            usage["seconds"] = round(time.monotonic() - started, 2)  # the model's time, retry included
            params = {"usage": usage, "replies": self._save(ctx, replies)}
            return Proposal(description, new, params, proposer=self.name)
        usage["seconds"] = round(time.monotonic() - started, 2)
        params = {"usage": usage, "replies": self._save(ctx, replies)}
        tries = "after one retry" if len(replies) > 1 else "once"
        return Proposal.failed(description, f"edit rejected {tries}: {error}", params, proposer=self.name)

    def _retry(self, system: str, user: str, said: str, error: str) -> list[dict]:
        """The turns that ask again: the model's reply (clipped to the window's room) and why."""
        ask = RETRY_PROMPT[self.asking].format(error=error)
        room = len(said) if self.window is None else self.window.prompt_chars - prompt.size(system, user) - len(ask)
        if room < 200:  # no room to show it its reply: say what was wrong only
            return [{"role": "assistant", "content": "(reply not shown)"}, {"role": "user", "content": ask}]
        return [{"role": "assistant", "content": prompt.clip(said, room)}, {"role": "user", "content": ask}]

    def _tally(self, ctx: Context, proposal: Proposal) -> None:
        """Count unusable edits in a row; bench the model at unusable_after, unbench on a usable one."""
        if not proposal.rejected:
            self.unusable = 0
            if self.benched:
                self.benched = False
                ctx.say(EventKind.MODEL_USABLE, f"{self.name}: the model's edit applied again; it proposes again")
            return
        self.unusable += 1
        if self.unusable >= self.opts.unusable_after and not self.benched:
            self.benched, self.since_fallback = True, 0
            reason = proposal.rejected
            ctx.say(
                EventKind.MODEL_UNUSABLE,
                f"{self.name}: the model's last {self.unusable} proposals could not be used (last: {reason}); "
                f"continuing with optuna, asking the model again every {self.opts.probe_every} proposals",
            )

    @property
    def asking(self) -> str:
        """The reply format the prompt describes: "json" or "text"."""
        return "text" if self.format == "text" else "json"

    def _refused_schema(self, exc: Exception, ctx: Context) -> bool:
        """Whether `exc` is the server refusing the structured reply asked for; if so, the next
        way is asked from now on (llm_reply.FLAVOURS, then text), said once in the journal."""
        if self.format == "text" or not llm_reply.refuses_schema(exc):
            return False
        ways = ["json_schema", "text"] if self.client.provider == "anthropic" else [*llm_reply.FLAVOURS, "text"]
        self.format = ways[ways.index(self.format) + 1]
        if self.format == "text" and self.opts.reply_format == "json":
            raise OvernightError(
                f"the server refused structured replies ({exc}) — use --reply-format auto or text"
            ) from None
        then = "SEARCH/REPLACE text" if self.format == "text" else f"a JSON schema through {self.format}"
        said = f"{self.name}: the server refused that structured reply ({exc}); asking for {then}"
        ctx.say(EventKind.REPLY_FORMAT, said)
        return True

    def _call(self, system: str, messages: list[dict], ctx: Context) -> Reply | None:
        tries = 1 if self.on_fallback else 1 + self.opts.retries  # a probe is one try
        last: Exception | None = None
        schema = llm_reply.schema(ctx.task.editable) if self.format != "text" else None
        max_tokens = self.window.reply if self.window is not None else None
        for attempt in range(tries):
            try:
                reply = self.client.chat(system, messages, schema, max_tokens, self.format)
            except (EndpointRefused, EndpointFault) as exc:
                if self._refused_schema(exc, ctx):
                    return Reply("", 0, 0)  # _converse asks again, the next way
                if isinstance(exc, EndpointFault):
                    last = exc
                    ctx.say(EventKind.ENDPOINT, f"{self.name}: try {attempt + 1}/{tries} failed: {exc}")
                    if attempt + 1 < tries:
                        self.sleep(min(self.opts.backoff * 2**attempt, MAX_BACKOFF))
                    continue
                if not self.answered and not self.on_fallback:
                    raise OvernightError(
                        f"the model endpoint refused the request ({exc}) — check --model, --base-url and the API key"
                    ) from None
                last = exc
                break  # waiting will not change a refusal
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
        usage["largest_prompt"] = max(usage.get("largest_prompt", 0), reply.tokens_in)  # vs the window
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
