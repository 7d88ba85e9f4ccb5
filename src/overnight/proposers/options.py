"""Settings of the model-driven proposers (llm, agent, hybrid), defined once.

`RunConfig.proposer_options` holds one of these; the CLI fills it from flags and
`make_proposer` hands it to the strategy. Nothing secret lives here: API keys are read from
the environment when a client is built, so they never reach the journal's copy of the config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from urllib.parse import urlparse

from overnight.errors import OvernightError

PROVIDERS = ("openai", "anthropic")
REPLY_FORMATS = ("auto", "json", "text")


@dataclass(frozen=True)
class ProposerOptions:
    model: str | None = None
    provider: str | None = None  # None: "anthropic" for claude-* models without --base-url, else "openai"
    base_url: str | None = None  # None: the SDK's default (or OPENAI_BASE_URL / ANTHROPIC_BASE_URL)
    max_tokens: int = 8192  # reply cap; Anthropic requires one, OpenAI-compatible servers get none
    request_timeout: float = 300.0  # seconds for one request; long replies from big models are slow
    retries: int = 4  # per proposal, after the first try, for endpoint faults
    backoff: float = 2.0  # first wait between tries in seconds; doubles each time, capped at 60
    probe_every: int = 5  # while on the fallback, try the endpoint again every N proposals
    price_in: float | None = None  # USD per million input tokens (cost accounting when set)
    price_out: float | None = None  # USD per million output tokens
    agent_cmd: str | None = None  # shell command; {prompt_file} and {description_file} are filled in
    agent: str | None = None  # a coding agent by name (agent_presets.py): its command line, when no agent_cmd
    context_tokens: int | None = None  # the model's window (window.py); None: asked of a local server
    reply_format: str = "auto"  # the edit as JSON where the server takes a schema (auto), always, or text
    unusable_after: int = 5  # proposals in a row the model's edit could not be used: optuna stands in
    agent_timeout: float = 1800.0  # wall-clock limit of one agent invocation, seconds
    hybrid_trials: int = 4  # Optuna trials on the current best after each LLM move (0: LLM only)
    # optuna: "global" is TPE over the whole space from the start; "local" moves one constant at
    # a time around the best first (local.py), then TPE. The night benchmark chose global: on the
    # nanogpt cpu preset, 30 min each, TPE's best verified +0.116 val_bpb (95 % CI +0.078 … +0.155)
    # against local's +0.023 (+0.007 … +0.039) (docs/figures.md, bench/night.py).
    knob_search: str = "global"

    @property
    def resolved_provider(self) -> str:
        if self.provider:
            return self.provider
        model = (self.model or "").lower()
        return "anthropic" if model.startswith("claude") and not self.base_url else "openai"

    def check(self, proposer: str) -> None:
        """One clear error for a missing or wrong flag, before the night starts."""
        if self.provider is not None and self.provider not in PROVIDERS:
            raise OvernightError(f"unknown provider {self.provider!r} — use openai or anthropic")
        if self.reply_format not in REPLY_FORMATS:
            raise OvernightError(f"unknown reply format {self.reply_format!r} — use {', '.join(REPLY_FORMATS)}")
        if proposer in ("llm", "hybrid") and not self.model:
            raise OvernightError(
                f"--proposer {proposer} needs --model — e.g. --model gpt-4.1, "
                "--model claude-sonnet-4-5, or the name your local server serves"
            )
        if proposer == "agent" and not self.agent_cmd and not self.agent:
            raise OvernightError(
                "--proposer agent needs --agent NAME (claude, codex, aider, gemini) or --agent-cmd — "
                "e.g. --agent claude"
            )
        if self.base_url is not None and urlparse(self.base_url).scheme not in ("http", "https"):
            raise OvernightError(f"--base-url {self.base_url!r} is not an http(s) URL — e.g. http://127.0.0.1:11434/v1")
        self.check_numbers()

    def check_numbers(self) -> None:
        """The numeric flags, whichever proposer: finite and in range (never NaN, never negative)."""
        if self.retries < 0 or self.hybrid_trials < 0 or self.probe_every < 1:
            raise OvernightError("--llm-retries and --hybrid-trials must be >= 0 — pass a count")
        if self.context_tokens is not None and self.context_tokens < 1024:
            raise OvernightError(
                f"--context-tokens must be at least 1024, got {self.context_tokens} — the model's context "
                "window in tokens (e.g. 8192)"
            )
        if self.unusable_after < 1:
            raise OvernightError("--llm-unusable-after must be at least 1 — a count of proposals")
        if self.max_tokens < 1:
            raise OvernightError(f"--max-tokens must be at least 1, got {self.max_tokens} — pass a token count")
        for name, price in (("--price-in", self.price_in), ("--price-out", self.price_out)):
            if price is not None and not (math.isfinite(price) and price >= 0):
                raise OvernightError(f"{name} must be >= 0 — USD per million tokens")
        for name, seconds in (("--agent-timeout", self.agent_timeout), ("request timeout", self.request_timeout)):
            if not (math.isfinite(seconds) and seconds > 0):
                raise OvernightError(f"{name} must be a positive number of seconds, got {seconds} — e.g. 1800")

    def cost(self, tokens_in: int, tokens_out: int) -> float | None:
        """USD for one call, or None when no price is configured."""
        if self.price_in is None and self.price_out is None:
            return None
        return (tokens_in * (self.price_in or 0.0) + tokens_out * (self.price_out or 0.0)) / 1e6
