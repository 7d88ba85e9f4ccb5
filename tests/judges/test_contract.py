"""Both judges pass the judge contract (overnight.testing.judge_contract)."""

from __future__ import annotations

import pytest

from overnight.judges.greedy import GreedyJudge
from overnight.judges.noise import NoiseJudge
from overnight.testing.judge_contract import JudgeContract


class TestGreedy(JudgeContract):
    name = "greedy"

    @pytest.fixture
    def judge(self):
        return GreedyJudge()


class TestNoise(JudgeContract):
    name = "noise"

    @pytest.fixture
    def judge(self):
        return NoiseJudge()
