"""Every proposer passes the proposer contract (overnight.testing.proposer_contract): the knob
searches as they are, the llm against the loopback server in both protocols, the agent with
the fake agent CLI, hybrid against the server (its LLM moves) and Optuna (its tuning)."""

from __future__ import annotations

import pytest

from overnight.errors import OvernightError
from overnight.proposers import make_proposer
from overnight.proposers.agent import AgentProposer
from overnight.proposers.hybrid import HybridProposer
from overnight.proposers.llm import LLMProposer
from overnight.testing.agents import agent_options
from overnight.testing.fake_llm import GELU_REPLY, options
from overnight.testing.proposer_contract import KnobProposerContract, ProposerContract


class TestOptuna(KnobProposerContract):
    name = "optuna"

    @pytest.fixture
    def make(self):
        return lambda: make_proposer("optuna")


class TestRandom(KnobProposerContract):
    name = "random"

    @pytest.fixture
    def make(self):
        return lambda: make_proposer("random")


class TestLLMOpenAI(ProposerContract):
    name = "llm"
    provider = "openai"
    proposed_by = ("llm",)  # the model's, never the Optuna fallback's

    @pytest.fixture
    def make(self, fake):
        fake.default = lambda request: GELU_REPLY
        return lambda: LLMProposer(options(fake, self.provider))


class TestLLMAnthropic(TestLLMOpenAI):
    provider = "anthropic"


class TestAgent(ProposerContract):
    name = "agent"
    proposed_by = ("agent",)

    @pytest.fixture
    def make(self):
        return lambda: AgentProposer(agent_options("gelu"))


class TestHybrid(ProposerContract):
    name = "hybrid"
    proposed_by = ("hybrid:llm", "hybrid:optuna")

    @pytest.fixture
    def make(self, fake):
        fake.default = lambda request: GELU_REPLY
        return lambda: HybridProposer(options(fake, hybrid_trials=2))


def test_unknown_proposer():
    with pytest.raises(OvernightError, match="unknown proposer"):
        make_proposer("genius")
