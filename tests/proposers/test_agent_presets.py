"""`--agent claude|codex|aider|gemini`: each preset's command line under a stand-in executable of
the same name that checks its flags as that CLI parses them and edits the worktree as it would
(testing/agent_standin.py)."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from overnight.cli import main
from overnight.errors import OvernightError
from overnight.proposers.agent import AgentProposer
from overnight.proposers.agent_presets import PRESETS, command
from overnight.proposers.options import ProposerOptions
from overnight.records import ExpStatus
from overnight.testing.agents import agent_standins
from overnight.testing.nights import controller_with
from overnight.testing.toy import write_toy


@pytest.fixture
def standins(tmp_path, monkeypatch):
    bin_dir = agent_standins(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    log = tmp_path / "standin.jsonl"
    monkeypatch.setenv("STANDIN_LOG", str(log))
    return log


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_each_preset_edits_the_worktree_unattended(night, standins, name, monkeypatch):
    set_keys = {"ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY", "AWS_SESSION_TOKEN"}
    for key in set_keys:
        monkeypatch.setenv(key, "sk-test")
    p = AgentProposer(ProposerOptions(agent=name))
    proposal = p.propose(night.ctx())
    assert proposal.rejected is None, proposal.rejected
    assert 'ACTIVATION = "gelu"' in proposal.edits["train.py"]
    assert proposal.description == f"{name}: switched the activation to gelu"  # its last line
    (seen,) = [json.loads(line) for line in standins.read_text().splitlines()]
    assert seen["name"] == name and "overnight-agent-" in seen["cwd"]  # a worktree outside the task
    # The keys that CLI reads, and no other credential.
    assert seen["keys"] == sorted(set(PRESETS[name].keys) & set_keys) and "AWS_SESSION_TOKEN" not in seen["keys"]
    if name == "aider":
        assert seen["args"][-1] == "train.py"  # {editable_files}


def test_a_preset_with_a_wrong_flag_fails_the_proposal_with_the_clis_own_words(night, standins):
    opts = ProposerOptions(agent_cmd=command("claude").replace("acceptEdits", "default"))
    proposal = AgentProposer(opts).propose(night.ctx())
    assert proposal.rejected and "--permission-mode 'default': not one of" in proposal.rejected


def test_agent_by_name_through_the_cli(tmp_path, standins, unsandboxed):
    root = write_toy(tmp_path / "toy")
    r = CliRunner().invoke(
        main,
        ["run", str(root), "--proposer", "agent", "--agent", "codex", "--experiments", "2", "--tag", "t", "--quiet"],
    )
    assert r.exit_code == 0, r.output
    c = controller_with(root, 2, "agent", ProposerOptions(agent="codex"))
    (exp,) = c.journal.experiments("t")[1:]
    assert exp.status == ExpStatus.KEPT and exp.proposer == "agent"
    c._lock.release()


def test_a_wrong_agent_option_is_one_line(tmp_path):
    root = write_toy(tmp_path / "toy")
    r = CliRunner().invoke(main, ["run", str(root), "--agent", "claude", "--experiments", "1"])
    assert r.exit_code == 2 and "--agent claude picks the coding agent of --proposer agent" in r.output
    r = CliRunner().invoke(main, ["run", str(root), "--proposer", "agent", "--agent", "cursor"])
    assert r.exit_code == 2 and "'cursor' is not one of" in r.output
    with pytest.raises(OvernightError, match="unknown agent 'cursor' — use one of claude, codex, aider, gemini"):
        command("cursor")
    with pytest.raises(OvernightError, match="agent command 'claude' not found on PATH \\(--agent claude\\)"):
        AgentProposer(ProposerOptions(agent="claude"))
