"""A real model in the loop (slow): llama.cpp serving SmolLM2-135M-Instruct, a toy night through
`overnight run --proposer llm`, the server killed mid-night and started again (testing/real_model.py
checks what must hold). Skips, saying why, where the server and the weights are not installed:
`OVERNIGHT_LLAMA_PYTHON` names an interpreter that has them (a 12-minute build, not a requirement)."""

from __future__ import annotations

import os
import sys

import pytest

from overnight.testing.real_model import available, night


@pytest.mark.slow
@pytest.mark.timeout(900)  # up to ~50 s a proposal: the model may ramble to its reply cap, twice
def test_a_real_model_proposes_through_a_real_server_that_dies_and_returns(tmp_path):
    python = os.environ.get("OVERNIGHT_LLAMA_PYTHON", sys.executable)
    why = available(python)
    if why:
        pytest.skip(why)
    result = night(python, "toy", proposals=4, kill_at=2, n_ctx=4096, work=tmp_path)
    # Optuna stands in from the failed call to the probe that finds the server back: the 5th
    # proposal after it (the 10th, if the server took longer to start than five toy runs).
    assert result["fallback_proposals"] in (5, 10) and result["model_proposals"] == 9 - result["fallback_proposals"]
    assert result["server_restarted_after"] and result["largest_prompt_tokens"] > 0
