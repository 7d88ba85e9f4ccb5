"""Fixtures for the model-driven proposers: a scripted LLM server on loopback, options that
point the real SDK clients at it with small timeouts, and nights on the real toy task."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Night, write_toy

from overnight.night.controller import Controller, RunConfig
from overnight.proposers import ProposerOptions

from .fake_llm import FakeLLM

# The toy task's line for ACTIVATION, and a reply that switches it to the better gelu.
RELU = 'ACTIVATION = "relu"  # relu | gelu | silu'
GELU_REPLY = f"""Switch the activation to gelu: smoother gradients should lower the loss.

train.py
<<<<<<< SEARCH
{RELU}
=======
{RELU.replace('"relu"', '"gelu"')}
>>>>>>> REPLACE
"""


def edit_reply(old: str, new: str, description: str = "A change.", path: str = "train.py") -> str:
    return f"{description}\n\n{path}\n<<<<<<< SEARCH\n{old}\n=======\n{new}\n>>>>>>> REPLACE\n"


@pytest.fixture(autouse=True)
def _no_real_keys(monkeypatch):
    """No test may reach a real API: keys and base URLs from the environment are removed, so
    the clients only know the loopback server (which gets the dummy local key)."""
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_AUTH_TOKEN",
        "OVERNIGHT_MODEL",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake():
    server = FakeLLM()
    yield server
    server.close()


def options(fake: FakeLLM, provider: str = "openai", **kw) -> ProposerOptions:
    url = fake.anthropic_url if provider == "anthropic" else fake.openai_url
    base = dict(model="any", provider=provider, base_url=url, request_timeout=2.0, retries=2, backoff=0.01)
    return ProposerOptions(**{**base, **kw})


def controller(root: Path, n: int, proposer: str, opts: ProposerOptions, tag: str = "t", **kw) -> Controller:
    return Controller(
        root, RunConfig(tag=tag, proposer=proposer, judge="greedy", experiments=n, proposer_options=opts, **kw)
    )


@pytest.fixture
def night(tmp_path) -> Night:
    return Night(write_toy(tmp_path / "toy"))
