"""The model's context window: how many tokens a prompt and its reply may take together.

A local server has a window of its own, often small (SmolLM2 8,192 tokens, an Ollama model 4,096
unless its `num_ctx` says otherwise), and it answers a prompt that does not fit with an error or,
like Ollama, by silently cutting the prompt's beginning, where the instructions are. So the
prompt is sized to the window (prompt.py shortens it), with room kept for the reply.

The window, in order: `--context-tokens N`; what the server says (llama.cpp's `/props`, an Ollama
model's `num_ctx` from `/api/show`); 8,192 for another server on this machine or network; none
for a hosted API (its windows hold the prompt's own caps, ~24,000 tokens, many times over).

Tokens are estimated, not counted (no tokenizer to install): 3 characters a token, fewer than
the 3.5-4 of English prose or Python under common tokenizers, so the estimate errs high and a
prompt sized by it fits (bench/real_model.py checks it against the server's own counts).
"""

from __future__ import annotations

import json
import math
import re
import urllib.request
from dataclasses import dataclass

from overnight.proposers.llm_client import is_local

CHARS_PER_TOKEN = 3.0
DEFAULT_LOCAL_WINDOW = 8192
OLLAMA_DEFAULT_WINDOW = 4096  # what Ollama gives a model whose num_ctx is not set
MIN_REPLY_TOKENS = 512
RETRY_ROOM = 2_000  # characters a sized prompt leaves for the one retry: the reply, clipped, and why
PROBE_TIMEOUT = 3.0


def tokens(chars: int) -> int:
    """The estimated tokens of `chars` characters (rounded up)."""
    return math.ceil(chars / CHARS_PER_TOKEN)


@dataclass(frozen=True)
class Window:
    tokens: int  # prompt and reply together
    source: str  # where the figure came from, said in the journal and by `overnight prompt`
    reply: int  # tokens kept for the reply

    @classmethod
    def of(cls, total: int, source: str, max_tokens: int) -> Window:
        return cls(total, source, min(max_tokens, max(MIN_REPLY_TOKENS, total // 4)))

    @property
    def prompt_chars(self) -> int:
        """The most characters the prompt (system message included) may have."""
        return int((self.tokens - self.reply) * CHARS_PER_TOKEN)

    @property
    def first_prompt_chars(self) -> int:
        """The most characters a conversation's first prompt may have: RETRY_ROOM less, so the
        retry (the reply shown again, clipped, and what was wrong) fits too."""
        return self.prompt_chars - RETRY_ROOM

    def describe(self) -> str:
        return f"{self.tokens:,} tokens ({self.source}), {self.reply:,} kept for the reply"


def _get(url: str, body: dict | None = None) -> dict | None:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # a local server: no proxy
    try:
        with opener.open(req, timeout=PROBE_TIMEOUT) as resp:
            out = json.loads(resp.read(1_000_000))
    except (OSError, ValueError):
        return None
    return out if isinstance(out, dict) else None


def from_server(base_url: str, model: str | None) -> tuple[int, str] | None:
    """(window, how it was found) from a llama.cpp or Ollama server at `base_url`, else None."""
    root = re.sub(r"/v1/?$", "", base_url.rstrip("/"))
    props = _get(f"{root}/props")
    if props is not None:
        n = (props.get("default_generation_settings") or {}).get("n_ctx") or props.get("n_ctx")
        if isinstance(n, int) and n > 0:
            return n, "the server's /props n_ctx"
    show = _get(f"{root}/api/show", {"model": model or ""})
    if show is not None and ("parameters" in show or "model_info" in show):
        found = re.search(r"^num_ctx\s+(\d+)", str(show.get("parameters") or ""), re.MULTILINE)
        if found:
            return int(found.group(1)), "the Ollama model's num_ctx"
        return OLLAMA_DEFAULT_WINDOW, "Ollama's default: the model sets no num_ctx"
    return None


def resolve(context_tokens: int | None, base_url: str | None, model: str | None, max_tokens: int) -> Window | None:
    """The window prompts are sized to (module docstring), or None: a hosted API, unsized."""
    if context_tokens is not None:
        return Window.of(context_tokens, "--context-tokens", max_tokens)
    if base_url and is_local(base_url):
        found = from_server(base_url, model)
        if found is not None:
            return Window.of(found[0], found[1], max_tokens)
        return Window.of(DEFAULT_LOCAL_WINDOW, "the default for a local server", max_tokens)
    return None
