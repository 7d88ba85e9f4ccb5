"""The model-driven proposers through the CLI: run, status, report, note, prompt."""

from __future__ import annotations

import json

from overnight.testing.fake_llm import GELU_REPLY, reply
from overnight.testing.gitutil import git_out
from overnight.testing.toy import write_toy


def test_run_llm_openai_end_to_end(cli, tmp_path, fake):
    root = write_toy(tmp_path / "toy")
    fake.push(reply(GELU_REPLY, 900, 60))
    note = cli("note", "try a longer warmdown", root)
    assert note.exit_code == 0 and "the next run" in note.output
    r = cli(
        "run",
        root,
        "--proposer",
        "llm",
        "--base-url",
        fake.openai_url,
        "--model",
        "any",
        "--judge",
        "greedy",
        "--experiments",
        2,
        "--tag",
        "n1",
        "--quiet",
        "--price-in",
        2,
        "--price-out",
        10,
    )
    assert r.exit_code == 0, r.output
    assert "- try a longer warmdown" in fake.requests[0]["messages"][-1]["content"]
    d = json.loads(cli("status", root, "--json").output)
    assert d["kept"] == 1 and d["llm"]["tokens_in"] == 900 and d["llm"]["tokens_out"] == 60
    assert d["llm"]["cost_usd"] == (900 * 2 + 60 * 10) / 1e6 and d["config"]["proposer_options"]["model"] == "any"
    assert 'ACTIVATION = "gelu"' in git_out(root, "show", "overnight/n1:train.py")
    assert "model: 1 proposals (0 rejected), 900 tokens in" in cli("status", root).output
    out = tmp_path / "report"
    assert cli("report", root, "--out", out).exit_code == 0
    md = (out / "report.md").read_text()
    assert "## Model usage" in md and "per kept improvement: $0.0024 (1 kept)" in md


def test_run_llm_anthropic_end_to_end(cli, tmp_path, fake):
    root = write_toy(tmp_path / "toy")
    fake.push(reply(GELU_REPLY))
    r = cli(
        "run",
        root,
        "--proposer",
        "llm",
        "--provider",
        "anthropic",
        "--base-url",
        fake.anthropic_url,
        "--model",
        "claude-any",
        "--judge",
        "greedy",
        "--experiments",
        2,
        "--quiet",
    )
    assert r.exit_code == 0, r.output
    assert fake.paths == ["/v1/messages"]
    assert json.loads(cli("status", root, "--json").output)["kept"] == 1


def test_config_mistakes_are_one_line(cli, toy_repo):
    r = cli("run", toy_repo, "--proposer", "llm", "--model", "gpt-x", "--experiments", 2)
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines() == [
        "error: OPENAI_API_KEY is not set — export it, or pass --base-url for a local server "
        "(any value works as the key of a server without auth)"
    ]
    r = cli("run", toy_repo, "--proposer", "hybrid", "--experiments", 2)
    assert r.exit_code == 2 and r.stderr.startswith("error: --proposer hybrid needs --model")
    r = cli("run", toy_repo, "--proposer", "agent", "--agent-cmd", "no-such-agent {prompt_file}")
    assert r.exit_code == 2 and "not found on PATH" in r.stderr
    assert cli("note", "   ", toy_repo).exit_code == 2


def test_prompt_dry_run(cli, toy_repo):
    cli("note", "prefer small changes", toy_repo)
    r = cli("prompt", toy_repo)
    assert r.exit_code == 0
    assert r.stdout.startswith("=== system ===") and "one JSON object with two fields" in r.stdout  # JSON first (auto)
    assert "<<<<<<< SEARCH" in cli("prompt", toy_repo, "--reply-format", "text").stdout
    assert "Minimise `val_loss`" in r.stdout and "- prefer small changes" in r.stdout
    assert 'ACTIVATION = "relu"' in r.stdout and "Only the baseline so far" in r.stdout
    assert "characters (~" in r.stderr
    assert not (toy_repo / ".overnight" / "preview").exists()
    agent = cli("prompt", toy_repo, "--proposer", "agent")
    assert "=== system ===" not in agent.stdout and "do not run the training" in agent.stdout
