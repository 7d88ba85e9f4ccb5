"""The agent proposer with a fake agent command that edits files in its worktree."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from overnight.errors import OvernightError
from overnight.proposers.agent import AgentProposer
from overnight.proposers.options import ProposerOptions
from overnight.records import ExpStatus
from overnight.testing.agents import agent_options
from overnight.testing.gitutil import git_out
from overnight.testing.nights import controller_with
from overnight.testing.toy import write_toy


def test_end_to_end_on_toy(tmp_path):
    root = write_toy(tmp_path / "toy")
    c = controller_with(root, 2, "agent", agent_options("gelu"))
    c.run()
    exp = c.journal.experiments("t")[1]
    assert exp.status == ExpStatus.KEPT and exp.proposer == "agent"
    assert exp.description == "Use gelu instead of relu because it is smoother."
    assert '+ACTIVATION = "gelu"' in exp.diff
    assert git_out(root, "rev-parse", "overnight/t").strip() == exp.commit_sha
    log = (root / ".overnight" / exp.params["agent_log"]).read_text()
    assert "leaked=[]" in log  # no OVERNIGHT_RESULT / OVERNIGHT_SEED: the agent is not a run
    cwd = log.split("cwd=")[1].split()[0]
    assert not Path(cwd).exists() and not cwd.startswith(str(root))  # a temporary worktree, removed
    prompt = (root / ".overnight" / "t" / "agent" / "0002" / "prompt.md").read_text()
    assert "do not run the training" in prompt and "Minimise `val_loss`" in prompt
    assert "Files at the current best" not in prompt  # the agent reads them in its checkout
    assert git_out(root, "worktree", "list").count("\n") == 1


def test_forbidden_file_is_sent_back_once(night):
    p = AgentProposer(agent_options("protected-then-gelu"))
    proposal = p.propose(night.ctx())
    assert proposal.rejected is None and set(proposal.edits) == {"train.py"}
    assert 'ACTIVATION = "gelu"' in proposal.edits["train.py"]


def test_broken_python_twice_is_a_failed_proposal(night):
    proposal = AgentProposer(agent_options("syntax")).propose(night.ctx())
    assert proposal.edits == {} and "rejected after one retry" in proposal.rejected
    assert "does not compile" in proposal.rejected


@pytest.mark.parametrize("mode, message", [("fail", "exited 3: something went wrong"), ("nothing", "changes nothing")])
def test_failing_or_idle_agent(night, mode, message):
    proposal = AgentProposer(agent_options(mode)).propose(night.ctx())
    assert message in proposal.rejected


def test_wall_clock_limit(night):
    t0 = time.monotonic()
    proposal = AgentProposer(agent_options("sleep", agent_timeout=0.5)).propose(night.ctx())
    assert "timed out after 0.5 s" in proposal.rejected
    assert time.monotonic() - t0 < 10


def test_missing_agent_command_is_one_clear_error():
    with pytest.raises(OvernightError, match="'no-such-agent' not found on PATH"):
        AgentProposer(ProposerOptions(agent_cmd="no-such-agent -p {prompt_file}"))
    with pytest.raises(OvernightError, match="needs --agent NAME"):
        AgentProposer(ProposerOptions())
