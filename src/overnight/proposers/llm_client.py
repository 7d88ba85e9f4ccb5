"""Two chat protocols behind one method: OpenAI-compatible Chat Completions and Anthropic Messages.

Both go through the providers' official SDKs (`pip install overnight[llm]`), imported only here
and only when a client is built, so the core imports without them. The SDKs' own retries are
off (`max_retries=0`): the proposer retries every fault the same way, including the ones the
SDKs do not retry (malformed JSON, an empty reply), and decides when to fall back.

Faults are sorted in two: `EndpointFault` (connection refused, timeouts, 429, 5xx, a reply that
is not JSON or holds no text) is worth retrying; `EndpointRefused` (401, 403, 404, 400: a wrong
key, model or URL) will not get better by waiting.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass
from urllib.parse import urlparse

from overnight.errors import OvernightError
from overnight.proposers.llm_reply import TOOL_NAME
from overnight.proposers.options import ProposerOptions

# The key a local server gets when none is set: Ollama, vLLM and llama.cpp ignore it, and the
# SDKs refuse to start without one.
DUMMY_KEY = "overnight-local"
RETRYABLE_STATUS = (408, 409, 425, 429)


class EndpointFault(Exception):
    """A failure worth retrying: the next try may work."""


class EndpointRefused(Exception):
    """The endpoint said no (bad key, unknown model, bad request): retrying will not help."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code  # 400 or 422 may be a server that takes no JSON schema (llm.py)


@dataclass(frozen=True)
class Reply:
    text: str
    tokens_in: int
    tokens_out: int
    estimated: bool = False  # the server sent no usage; tokens estimated at 4 characters each


MAX_REPLY = 200_000  # characters of a model's reply kept: a whole train.py is about 30,000


def is_local(url: str | None) -> bool:
    """A server on this machine or a private network, where a missing key is normal."""
    host = urlparse(url).hostname if url else None
    if not host:
        return False
    if host == "localhost" or host.endswith(".local"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private or ip.is_unspecified


def api_key(provider: str, base_url: str | None) -> str | None:
    env = "ANTHROPIC_API_KEY" if provider == "anthropic" else "OPENAI_API_KEY"
    url_env = "ANTHROPIC_BASE_URL" if provider == "anthropic" else "OPENAI_BASE_URL"
    key = os.environ.get(env)
    if key:
        return key
    if provider == "anthropic" and os.environ.get("ANTHROPIC_AUTH_TOKEN"):
        return None  # the SDK reads the bearer token itself
    if is_local(base_url or os.environ.get(url_env)):
        return DUMMY_KEY
    raise OvernightError(
        f"{env} is not set — export it, or pass --base-url for a local server "
        f"(any value works as the key of a server without auth)"
    )


def _estimate(chars: int) -> int:
    return max(1, chars // 4)


class Client:
    """One chat endpoint. `chat(system, messages)` returns a Reply or raises a fault."""

    def __init__(self, opts: ProposerOptions):
        self.opts = opts
        self.provider = opts.resolved_provider
        base_url = opts.base_url
        if self.provider == "anthropic" and base_url and base_url.rstrip("/").endswith("/v1"):
            base_url = base_url.rstrip("/")[:-3]  # the Anthropic SDK appends /v1/messages itself
        key = api_key(self.provider, base_url)
        try:
            sdk = __import__(self.provider)
        except ImportError:
            raise OvernightError(
                f"the {self.provider} package is not installed — pip install 'overnight[llm]'"
            ) from None
        self.sdk = sdk
        cls = sdk.Anthropic if self.provider == "anthropic" else sdk.OpenAI
        kwargs = {"api_key": key, "timeout": opts.request_timeout, "max_retries": 0}
        if base_url:
            kwargs["base_url"] = base_url
        self.client = cls(**kwargs)

    def chat(
        self,
        system: str,
        messages: list[dict],
        schema: dict | None = None,
        max_tokens: int | None = None,
        flavour: str = "json_schema",
    ) -> Reply:
        """`schema`: the reply asked for as JSON of that schema, the `flavour` way (llm_reply.py);
        `max_tokens`: the reply's cap (a local model's window: window.py)."""
        try:
            if self.provider == "anthropic":
                return self._anthropic(system, messages, schema, max_tokens)
            return self._openai(system, messages, schema, max_tokens, flavour)
        except self.sdk.APIStatusError as exc:
            code = exc.status_code
            if code >= 500 or code in RETRYABLE_STATUS:
                raise EndpointFault(f"HTTP {code}: {_short(exc)}") from None
            raise EndpointRefused(f"HTTP {code}: {_short(exc)}", code) from None
        except self.sdk.APIError as exc:  # connection refused, timeouts, a body that is not JSON
            raise EndpointFault(f"{type(exc).__name__}: {_short(exc)}") from None
        except (ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
            raise EndpointFault(f"malformed reply: {type(exc).__name__}: {_short(exc)}") from None

    def _openai(
        self, system: str, messages: list[dict], schema: dict | None, max_tokens: int | None, flavour: str
    ) -> Reply:
        kw: dict = {}
        if schema is not None and flavour == "json_object":
            kw["response_format"] = {"type": "json_object", "schema": schema}
        elif schema is not None:
            spec = {"name": "edit", "schema": schema, "strict": True}
            kw["response_format"] = {"type": "json_schema", "json_schema": spec}
        if max_tokens is not None:
            kw["max_tokens"] = max_tokens
        resp = self.client.chat.completions.create(
            model=self.opts.model, messages=[{"role": "system", "content": system}, *messages], **kw
        )
        if not getattr(resp, "choices", None):
            raise EndpointFault("malformed reply: no choices")
        text = resp.choices[0].message.content or ""
        usage = resp.usage
        return self._reply(text, system, messages, usage and usage.prompt_tokens, usage and usage.completion_tokens)

    def _anthropic(self, system: str, messages: list[dict], schema: dict | None, max_tokens: int | None) -> Reply:
        kw: dict = {}
        if schema is not None:  # forced tool use: the tool's input is the edit
            kw["tools"] = [{"name": TOOL_NAME, "description": "Propose one change.", "input_schema": schema}]
            kw["tool_choice"] = {"type": "tool", "name": TOOL_NAME}
        resp = self.client.messages.create(
            model=self.opts.model, max_tokens=max_tokens or self.opts.max_tokens, system=system, messages=messages, **kw
        )
        blocks = resp.content or []
        text = "".join(getattr(b, "text", "") for b in blocks if getattr(b, "type", "") == "text")
        tool = next((b for b in blocks if getattr(b, "type", "") == "tool_use"), None)
        if tool is not None:
            text = json.dumps(tool.input)
        usage = resp.usage
        return self._reply(text, system, messages, usage and usage.input_tokens, usage and usage.output_tokens)

    @staticmethod
    def _reply(text: str, system: str, messages: list[dict], tin, tout) -> Reply:
        if not isinstance(text, str) or not text.strip():
            raise EndpointFault("empty reply")
        if len(text) > MAX_REPLY:  # stored in the journal and sent back in a retry: bounded first
            text = text[:MAX_REPLY] + f"\n[the reply was cut here: it was {len(text):,} characters, over {MAX_REPLY:,}]"
        if isinstance(tin, int) and isinstance(tout, int):
            return Reply(text, tin, tout)
        sent = len(system) + sum(len(str(m.get("content", ""))) for m in messages)
        return Reply(text, _estimate(sent), _estimate(len(text)), estimated=True)

    def close(self) -> None:
        self.client.close()


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200]
