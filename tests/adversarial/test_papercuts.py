"""The third review's papercuts (issue 31): bad input gets one line and exit code 2; model text
reaches a terminal or a commit subject without its control characters (the journal keeps it
as it came); a model's reply is bounded before it is stored or sent back."""

from __future__ import annotations

import os

import pytest

from overnight import gitops
from overnight.night.config import RunConfig
from overnight.night.controller import Controller
from overnight.proposers import Proposal, Proposer
from overnight.proposers.llm_client import MAX_REPLY, Client
from overnight.testing.gitutil import git_out
from overnight.testing.procs import one_error_line

# unsandboxed: its worktree-removed case has the run remove its own worktree, which a sandbox forbids
pytestmark = pytest.mark.usefixtures("unsandboxed")


def test_a_tag_too_long_for_a_file_name_is_one_line(cli, toy_repo):
    one_error_line(cli("run", toy_repo, "--tag", "x" * 300, "--experiments", "1"), "300 characters", "at most 64")


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--budget", "1e308"], ["--budget", "at most a week"]),
        (["--budget", "inf"], ["--budget"]),
        (["--gpus", "garbage"], ["--gpus", "'garbage'"]),
        (["--gpus", "0,x"], ["--gpus"]),
    ],
)
def test_run_refuses_impossible_values_in_one_line(cli, toy_repo, args, needles):
    one_error_line(cli("run", toy_repo, "--experiments", "1", *args), *needles)


@pytest.mark.parametrize("command", ["verify", "ablate"])
def test_checks_refuse_an_impossible_budget(cli, toy_repo, command):
    one_error_line(cli(command, toy_repo, "--budget", "1e308"), "--budget", "at most a week")


def _edit_spec(root, old, new):
    spec = root / "overnight.toml"
    text = spec.read_text()
    assert old in text, text
    spec.write_text(text.replace(old, new, 1))
    gitops.git(root, "commit", "-qam", "spec edited")


def test_an_empty_command_is_refused_before_the_night(cli, toy_repo):
    _edit_spec(toy_repo, 'command   = "python train.py"', 'command   = ""')
    one_error_line(cli("run", toy_repo, "--experiments", "1"), "task.command is empty")


def test_a_budget_of_1e308_in_the_spec_is_refused(cli, toy_repo):
    spec = (toy_repo / "overnight.toml").read_text()
    budget_line = next(line for line in spec.splitlines() if line.startswith("budget"))
    _edit_spec(toy_repo, budget_line, "budget    = 1e308")
    one_error_line(cli("run", toy_repo, "--experiments", "1"), "task.budget", "over a week")


def test_an_editable_symlink_is_named_as_such(cli, toy_repo):
    (toy_repo / "real_train.py").write_text((toy_repo / "train.py").read_text())
    (toy_repo / "train.py").unlink()
    os.symlink("real_train.py", toy_repo / "train.py")
    gitops.git(toy_repo, "add", "-A")
    gitops.git(toy_repo, "commit", "-qm", "train.py a symlink")
    one_error_line(cli("run", toy_repo, "--experiments", "1"), "'train.py'", "is a symlink", "real_train.py")


EVIL = "Raise the LR\x1b]0;pwned\x07\x1b[2J and \u202edesrever\u202c done"


class Describes(Proposer):
    name = "describer"

    def propose(self, ctx):
        src = ctx.incumbent_files["train.py"]
        return Proposal(EVIL, {"train.py": src.replace("LEARNING_RATE = 0.01", "LEARNING_RATE = 0.02")}, {})


def test_control_characters_of_a_model_never_reach_the_terminal_or_a_commit(cli, toy_task):
    root = toy_task()
    c = Controller(root, RunConfig(tag="t", proposer="random", judge="greedy", experiments=2))
    c.proposer = Describes()
    c.run()
    exp = c.journal.experiments("t")[1]
    assert exp.description == EVIL  # the journal keeps it as it came
    outputs = [cli("show", exp.id, root).output, cli("status", root).output]
    subjects = git_out(root, "log", "--all", "--format=%s")
    for text in [*outputs, subjects]:
        assert not any(ch in text for ch in ("\x1b", "\x07", "\u202e", "\u202c")), repr(text)
    assert "Raise the LR?]0;pwned??[2J and ?desrever? done" in outputs[0]


def test_a_huge_reply_is_cut_before_it_is_stored(fake):
    from overnight.testing.fake_llm import options, reply

    fake.push(reply("x" * (30 * 1024 * 1024)))
    client = Client(options(fake))
    try:
        got = client.chat("system", [{"role": "user", "content": "hi"}])
    finally:
        client.close()
    assert len(got.text) < MAX_REPLY + 200 and got.text.endswith("over 200,000]")


def test_an_editable_file_with_crlf_endings_takes_llm_edits_and_keeps_them(tmp_path, fake):
    from overnight.testing.fake_llm import GELU_REPLY, options, reply
    from overnight.testing.nights import controller_with
    from overnight.testing.toy import write_toy

    root = write_toy(tmp_path / "toy")
    train = root / "train.py"
    train.write_bytes(train.read_bytes().replace(b"\n", b"\r\n"))
    gitops.git(root, "commit", "-qam", "CRLF line endings")
    fake.push(reply(GELU_REPLY, 1200, 80))  # the model's reply: LF endings, as models write
    c = controller_with(root, 2, "llm", options(fake, "openai"))
    c.run()
    exp = c.journal.experiments("t")[1]
    assert exp.proposer == "llm" and exp.commit_sha, (exp.status, exp.reason)
    new = gitops.read_file(root, exp.commit_sha, "train.py")
    assert b'ACTIVATION = "gelu"' in new and new.count(b"\r\n") == new.count(b"\n")  # every line still CRLF


def test_a_worktree_removed_during_a_run_runs_it_again_and_blames_no_one(toy_task, tmp_path):
    from overnight.testing.attacks import HONEST, TOY_HEAD, night

    once = tmp_path / "removed-once"
    body = (
        "import os, shutil, sys\n"
        f"if not os.path.exists({str(once)!r}):  # the user's rm -rf, the first time only\n"
        f"    open({str(once)!r}, 'w').close()\n"
        "    shutil.rmtree(os.getcwd())\n"
        "    sys.exit(1)\n" + TOY_HEAD + "# a tie\n" + HONEST
    )
    c, h = night(toy_task(), body)
    e = h[1]
    assert once.exists() and e.status.value == "discarded" and "does not beat" in e.reason, (e.status, e.reason)
    assert [r.status.value for r in e.runs] == ["interrupted", "ok"]
    assert "was removed while it ran" in c.journal.events("t", "requeued")[0]["message"]


def test_a_damaged_optuna_study_on_resume_is_one_line(cli, toy_task):
    root = toy_task()
    args = ("--experiments", "2", "--proposer", "optuna", "--judge", "greedy", "--tag", "t", "--quiet")
    assert cli("run", root, *args).exit_code == 0
    db = root / ".overnight" / "optuna.db"
    assert db.is_file()
    db.write_bytes(b"not a database, as a full disk can leave it" * 100)
    resumed = cli("run", root, "--experiments", "4", *args[2:])
    one_error_line(resumed, "optuna study", "optuna.db", "move the file aside")


def test_git_on_a_full_disk_says_so(tmp_path, monkeypatch):
    import subprocess

    from overnight.errors import GitError

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.txt").write_text("a\n")
    commit = gitops.init_repo(repo, "init")
    real = gitops.run_git

    def full(args, env=None, **kw):  # what git prints when a write fails for want of space
        if "hash-object" in args or "commit-tree" in args:
            said = b"error: unable to write file: No space left on device\n"
            return subprocess.CompletedProcess(args, 128, b"", said)
        return real(args, env=env, **kw)

    monkeypatch.setattr(gitops, "run_git", full)
    with pytest.raises(GitError, match="the disk of .* is full — free space there, then resume"):
        gitops.make_commit(repo, commit, {"a.txt": "b\n"}, "an edit")
