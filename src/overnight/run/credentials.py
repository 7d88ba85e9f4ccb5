"""What of the user's environment a run never sees: credentials.

A run executes code a model wrote, so its environment (runner._run_env, the re-score's too)
and the agent proposer's command get the user's environment minus every variable that looks
like a credential: the harness's own keys (OPENAI_API_KEY, ANTHROPIC_API_KEY, ...) and common
secret names (`*_API_KEY`, `*_TOKEN`, `*_SECRET`, `*_PASSWORD`, `AWS_*`, ...). A task that
needs one lists it in `[task] pass_env`; `[task] env` is the task's own and always passes.

Text that goes into a model's prompt (prompt.build: log tails, failure reasons) is scanned for
the values of those variables and each is replaced by `[redacted NAME]`, whether or not the
task passed it to its runs: letting a run read a key is not sending it to an LLM provider.

What this does NOT protect against: a secret under a name that looks like nothing (MY_THING),
a secret in a file the run can read (~/.netrc, ~/.aws/credentials, ~/.cache/huggingface/token:
use `limits.sandbox`), or a value shorter than MIN_REDACT characters in a prompt.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

# The harness's own (llm_client, Ray) and well-known ones the patterns below would miss.
NAMES = frozenset(
    {
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "RAY_AUTH_TOKEN",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "GH_TOKEN",
        "GITHUB_TOKEN",
        "WANDB_API_KEY",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "SSH_AUTH_SOCK",
        "NETRC",
        "PGPASSWORD",
        "DATABASE_URL",
    }
)
_SUFFIX = re.compile(
    r"(?:^|_)(?:API_?KEY|TOKEN|SECRET|SECRET_KEY|ACCESS_KEY|ACCESS_KEY_ID|PRIVATE_KEY|PASSWORD|"
    r"PASSWD|PASS|PASSPHRASE|CREDENTIALS?|AUTH|AUTHTOKEN|KEY)$",
    re.IGNORECASE,
)  # KEY: KAGGLE_KEY, OPENAI_KEY
_PREFIX = re.compile(r"^(?:AWS|AZURE|GCP|GOOGLE_CLOUD)_", re.IGNORECASE)
MIN_REDACT = 6  # shorter values are not redacted ("1", "true", a region code would mangle the log)


def is_secret(name: str) -> bool:
    return name.upper() in NAMES or bool(_SUFFIX.search(name) or _PREFIX.match(name))


def withheld(environ: Mapping[str, str] | None = None, pass_env: Iterable[str] = ()) -> list[str]:
    """The names in `environ` a run does not get (sorted); names only, never values."""
    environ = os.environ if environ is None else environ
    passed = set(pass_env)
    return sorted(k for k in environ if is_secret(k) and k not in passed)


def scrub(environ: Mapping[str, str] | None = None, pass_env: Iterable[str] = ()) -> dict[str, str]:
    """`environ` without the withheld names."""
    environ = os.environ if environ is None else environ
    hidden = set(withheld(environ, pass_env))
    return {k: v for k, v in environ.items() if k not in hidden}


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """`text` with each credential's value (every secret-looking name of `environ`, passed to
    runs or not) replaced by `[redacted NAME]`; longest values first."""
    environ = os.environ if environ is None else environ
    values = sorted(
        ((v, k) for k, v in environ.items() if is_secret(k) and len(v) >= MIN_REDACT), key=lambda vk: -len(vk[0])
    )
    for value, name in values:
        if value in text:
            text = text.replace(value, f"[redacted {name}]")
    return text


def named_in(command: str) -> list[str]:
    """The variables a shell command line names itself (`$NAME`, `${NAME}`)."""
    return sorted(set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", command)))


def agent_env(command: str, pass_env: Iterable[str] = (), environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The agent proposer's environment: like a run's, plus the credentials its command line
    names (`--agent-cmd 'ANTHROPIC_API_KEY=$ANTHROPIC_API_KEY claude -p ...'`).

    The agent is a coding-agent CLI that may need its own API key, but it also reads and runs
    whatever the task's files and prompt lead it to, so it gets no key by default: the user
    passes the agent's key explicitly, in the command itself (the agent only, not the runs),
    or with `[task] pass_env` (the runs too). Agents that log in with a file (claude's
    ~/.claude, codex's ~/.codex) need neither."""
    return scrub(environ, [*pass_env, *named_in(command)])


def hide_controller_environ() -> None:
    """Make this process non-dumpable (prctl PR_SET_DUMPABLE 0): its /proc/<pid>/environ, which
    keeps the keys the harness itself needs (the llm proposer's), becomes readable by root only,
    not by a run of the same user walking up its parents. Children reset it at exec. Linux only;
    a no-op elsewhere. It does not protect against a run as root (a container's default)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError):
        pass
