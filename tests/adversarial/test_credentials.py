"""A candidate that reads the user's credentials (issue 12, item 11): runs, re-scores and the
agent command get the environment without them unless `[task] pass_env` names them, the night
says which names were withheld, and a credential a run printed is redacted from the prompt."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from overnight import gitops
from overnight.errors import TaskSpecError
from overnight.night.config import Observer, RunConfig
from overnight.night.controller import Controller
from overnight.proposers import prompt
from overnight.proposers.agent import AgentProposer
from overnight.proposers.options import ProposerOptions
from overnight.records import ExpStatus
from overnight.task_load import load_task
from overnight.testing.attacks import TOY_HEAD, Attacks, check_intact, night
from overnight.testing.nights import ToyNight
from overnight.testing.toy import write_toy

SECRETS = {
    "OPENAI_API_KEY": "sk-fake-openai-0123456789abcdef",
    "ANTHROPIC_API_KEY": "sk-ant-fake-0123456789abcdef",
    "RAY_AUTH_TOKEN": "ray-fake-token-0123456789",
    "AWS_SECRET_ACCESS_KEY": "aws-fake-secret-0123456789",
    "MY_DB_PASSWORD": "hunter2-fake-password",
    "HF_TOKEN": "hf_fake_0123456789abcdef",
}

# Prints what it can read, then crashes: its log tail is journaled and goes into the next prompt.
SNOOP = (
    TOY_HEAD
    + f"""import os, sys
for name in {sorted(SECRETS)!r}:
    print("sees", name, os.environ.get(name))
sys.exit(1)
"""
)


@pytest.fixture
def secrets(monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    return SECRETS


def log_of(e) -> str:
    return Path(e.runs[-1].log_path).read_text()


def test_a_run_sees_none_of_the_users_credentials(toy_task, secrets):
    root = toy_task()
    _, h = night(root, SNOOP)
    e = h[-1]
    assert e.status == ExpStatus.CRASHED, (e.status, e.reason)
    log = log_of(e)
    for name, value in secrets.items():
        assert f"sees {name} None" in log, log
        assert value not in log and value not in (e.runs[-1].log_tail or "")


def test_pass_env_passes_only_the_names_it_lists(toy_task, secrets):
    root = toy_task(task_extra='pass_env = ["HF_TOKEN"]\n')
    _, h = night(root, SNOOP)
    log = log_of(h[-1])
    assert f"sees HF_TOKEN {secrets['HF_TOKEN']}" in log
    assert "sees OPENAI_API_KEY None" in log and secrets["OPENAI_API_KEY"] not in log


def test_the_rescore_does_not_see_them_either(toy_task, secrets):
    root = toy_task()
    spec = root / "overnight.toml"
    spec.write_text(
        spec.read_text().replace(
            'rescore   = "python evaluate.py --rescore"',
            "rescore   = '''python evaluate.py --rescore && python -c \"import os; "
            "print('rescore sees', os.environ.get('OPENAI_API_KEY'), os.environ.get('RAY_AUTH_TOKEN'))\"'''",
        )
    )
    gitops.git(root, "commit", "-qam", "rescore prints the environment")
    night(root)  # the baseline alone: it is re-scored before it is kept
    logs = [p.read_text() for p in (root / ".overnight" / "t" / "runs").glob("*/rescore.txt")]
    assert logs and all("rescore sees None None" in text for text in logs), logs


def test_the_prompt_redacts_a_credential_a_run_printed(toy_task, secrets, tmp_path):
    # The key is withheld from the environment, but the run found it in a file and printed it.
    keyfile = tmp_path / "key.txt"
    keyfile.write_text(secrets["OPENAI_API_KEY"])
    root = toy_task(task_extra='pass_env = ["HF_TOKEN"]\n')
    c, h = night(root, SNOOP.replace("sys.exit(1)", f"print(open({str(keyfile)!r}).read())\nsys.exit(1)"))
    assert secrets["OPENAI_API_KEY"] in h[-1].runs[-1].log_tail  # what the run printed is on record
    for mode in ("llm", "agent"):
        _, text = prompt.build(c.context(h), mode, description_file="d.txt")
        assert "# Last failed run (log tail)" in text
        assert "[redacted OPENAI_API_KEY]" in text and "[redacted HF_TOKEN]" in text
        assert not any(value in text for value in secrets.values()), text


class Messages(Observer):
    def __init__(self):
        self.said: list[str] = []

    def message(self, text: str) -> None:
        self.said.append(text)


def test_the_night_says_which_names_it_withheld(toy_task, secrets):
    root = toy_task(task_extra='pass_env = ["HF_TOKEN"]\n')
    obs = Messages()
    c = Controller(root, RunConfig(tag="t", proposer="random", judge="greedy", experiments=1), observer=obs)
    c.proposer = Attacks([])
    c.run()
    check_intact(root, "t", c.journal.experiments("t"))
    said = [m for m in obs.said if "withheld" in m]
    assert len(said) == 1, obs.said
    for name in set(secrets) - {"HF_TOKEN"}:
        assert name in said[0]
    assert "HF_TOKEN" not in said[0]
    assert not any(value in m for m in obs.said for value in secrets.values())  # names, never values


def agent(cmd: str) -> AgentProposer:
    return AgentProposer(ProposerOptions(agent_cmd=cmd, agent_timeout=30))


PRINT_KEYS = (
    f"{sys.executable} -c \"import os; print('agent sees', os.environ.get('OPENAI_API_KEY'), "
    "os.environ.get('ANTHROPIC_API_KEY'))\""
)


def test_the_agent_gets_only_the_key_its_command_names(tmp_path, secrets):
    night_ = ToyNight(write_toy(tmp_path / "toy"))
    log = night_.state / "t" / "agent" / "0002" / "agent.log"
    proposal = agent(PRINT_KEYS).propose(night_.ctx())
    assert proposal.rejected  # it changed nothing
    assert "agent sees None None" in log.read_text()
    log.unlink()
    # Passed explicitly for the agent alone, in its own command line.
    agent("ANTHROPIC_API_KEY=$ANTHROPIC_API_KEY " + PRINT_KEYS).propose(night_.ctx())
    assert f"agent sees None {secrets['ANTHROPIC_API_KEY']}" in log.read_text()


def test_pass_env_must_be_a_list_of_names(toy_task):
    root = toy_task(task_extra='pass_env = "HF_TOKEN"\n')
    with pytest.raises(TaskSpecError, match="task.pass_env must be a list"):
        load_task(root)
    assert load_task(toy_task(task_extra='pass_env = ["HF_TOKEN"]\n')).pass_env == ("HF_TOKEN",)
