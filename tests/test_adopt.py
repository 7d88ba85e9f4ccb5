"""`overnight init` on an existing repository: autoresearch's layout and a generic script, what
is guessed, what is refused in one line, and a short night end to end on each (real git, real
subprocesses; the repositories are written by overnight.testing.autoresearch)."""

from __future__ import annotations

import os
import re
import shutil
import sys
import tomllib
from pathlib import Path

import pytest

from overnight import gitops
from overnight.adopt import inspect_repo, metric_pattern, printed_metrics
from overnight.night.tags import open_journal
from overnight.task_load import load_task
from overnight.testing.autoresearch import RESULTS, write_autoresearch, write_generic
from overnight.testing.gitutil import git_out
from overnight.testing.procs import one_error_line


@pytest.fixture
def python_on_path(monkeypatch):
    """`python train.py`, as init writes it, runs this interpreter (the repository's venv, in effect)."""
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


def _spec(root: Path) -> dict:
    return tomllib.loads((root / "overnight.toml").read_text())


def test_autoresearch_layout_is_recognised_with_a_reason_for_every_field(cli, tmp_path):
    root = write_autoresearch(tmp_path / "ar", budget=300)
    result = cli("init", root)
    assert result.exit_code == 0, result.output
    spec = _spec(root)
    assert spec["task"]["editable"] == ["train.py"]
    assert spec["task"]["protected"] == ["prepare.py", "program.md", "pyproject.toml"]
    assert spec["task"]["budget"] == 300 and spec["task"]["fixed_budget"] is True
    assert spec["task"]["timeout"] == 600 and spec["limits"]["overhead"] == 300
    assert spec["metric"] == {
        "name": "val_bpb",
        "goal": "minimize",
        "source": "stdout",
        "pattern": spec["metric"]["pattern"],
    }
    assert spec["task"]["command"] in ("python train.py", "uv run train.py")
    text = (root / "overnight.toml").read_text()
    for line in text.splitlines():  # every field says why it has its value
        if "=" in line and not line.startswith("#"):
            assert "  # " in line, line
    for knob in ("MATRIX_LR", "DEPTH", "ADAM_BETAS[1]", "TOTAL_BATCH_SIZE"):
        assert f"#   {knob}" in text  # what the optuna proposer will search, listed
    # The peak-FLOPs constant only reaches the printed MFU: not searched, and said why.
    assert "#   H100_BF16_PEAK_FLOPS" not in text
    assert "\nH100_BF16_PEAK_FLOPS = false  # not searched: only reaches print()" in text
    # Not committed without --commit, and nothing of the user's touched.
    assert git_out(root, "status", "--porcelain").strip() == "?? overnight.toml"
    assert (root / "results.tsv").read_text() == RESULTS
    assert "autoresearch layout" in result.stdout and "not committed" in result.stdout


def test_the_metric_is_only_the_value_after_the_summary_line(tmp_path):
    found = inspect_repo(write_autoresearch(tmp_path / "ar"))
    log = "val_bpb: 0.5 (a progress line that mentions it)\nstep 10\n---\nval_bpb:          1.234500\nfoo: 1\n"
    assert [float(v) for v in re.findall(found.pattern, log, re.MULTILINE)] == [1.2345]
    assert re.findall(found.pattern, "val_bpb: 0.5\n", re.MULTILINE) == []


def test_uv_command_when_uv_and_its_lock_are_there(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "uv").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "uv").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert inspect_repo(write_autoresearch(tmp_path / "a", uv_lock=True)).command == "uv run train.py"
    only_git = tmp_path / "only-git"  # a PATH with git and no uv
    only_git.mkdir()
    (only_git / "git").symlink_to(shutil.which("git"))
    monkeypatch.setenv("PATH", str(only_git))
    assert inspect_repo(write_autoresearch(tmp_path / "b", uv_lock=True)).command == "python train.py"


def test_printed_metrics_in_either_format():
    source = 'print(f"val_loss: {v:.4f}")\nprint("acc=", a, end="")\nprint(f"e {i} loss={l:.3f} top1={t}")'
    assert printed_metrics(source) == [("val_loss", ":"), ("acc", "="), ("loss", "="), ("top1", "=")]
    pattern = metric_pattern("val_acc")
    assert re.findall(pattern, "epoch 1 train_loss=0.4 val_acc=0.61\nval_acc: 0.7\n", re.MULTILINE) == ["0.61", "0.7"]
    assert re.findall(pattern, "my_val_acc=0.3\n", re.MULTILINE) == []


@pytest.mark.parametrize(
    ("style", "metric", "goal"), [("colon", "val_loss", "minimize"), ("equals", "val_acc", "maximize")]
)
def test_generic_script_guesses_entry_point_metric_and_goal(cli, tmp_path, style, metric, goal):
    root = write_generic(tmp_path / style, style=style)
    result = cli("init", root, "--budget", "1", "--commit")
    assert result.exit_code == 0, result.output
    spec = _spec(root)
    assert spec["task"]["command"] == "python main.py" and spec["task"]["editable"] == ["main.py"]
    assert spec["task"]["protected"] == ["utils.py"]
    assert (spec["metric"]["name"], spec["metric"]["goal"]) == (metric, goal)
    assert "fixed_budget" not in spec["task"]  # the script reads OVERNIGHT_BUDGET
    assert git_out(root, "log", "-1", "--format=%s").startswith("overnight init: overnight.toml")
    assert git_out(root, "status", "--porcelain") == ""
    assert load_task(root).metric.name == metric


@pytest.mark.parametrize(
    ("prepare", "args", "needles"),
    [
        ("not_a_repo", (), ("not the top of a git repository", "git init")),
        ("dirty", (), ("uncommitted changes in prepare.py", "commit or stash")),
        ("existing", (), ("overnight.toml exists", "--force")),
        ("no_metric", (), ("found no metric", "--metric NAME")),
        ("no_entry", (), ("no Python entry point", "--editable FILE")),
        ("missing_editable", ("--editable", "nope.py"), ("--editable nope.py", "no such file")),
        ("builtin_flags", ("--task", "toy", "--metric", "x"), ("--metric", "existing repository")),
    ],
)
def test_bad_input_is_one_line_that_says_what_to_do(cli, tmp_path, prepare, args, needles):
    root = tmp_path / "repo"
    if prepare == "not_a_repo":
        root.mkdir()
        (root / "train.py").write_text("LR = 1\n")
    elif prepare == "dirty":
        write_autoresearch(root)
        (root / "prepare.py").write_text((root / "prepare.py").read_text() + "# edited\n")
    elif prepare == "existing":
        write_autoresearch(root)
        (root / "overnight.toml").write_text("# mine\n")
    elif prepare == "no_metric":
        root.mkdir()
        (root / "train.py").write_text("LR = 0.1\nprint('done')\n")
        gitops.init_repo(root, "x")
    elif prepare in ("no_entry", "missing_editable"):
        root.mkdir()
        (root / "README.md").write_text("hi\n")
        gitops.init_repo(root, "x")
    else:
        root = tmp_path / "new"
    before = sorted(p.name for p in root.iterdir()) if root.exists() else None
    line = one_error_line(cli("init", root, *args), *needles)
    assert len(line) < 300
    if before is not None:  # nothing written, nothing lost
        assert sorted(p.name for p in root.iterdir()) == before
    if prepare == "existing":
        assert (root / "overnight.toml").read_text() == "# mine\n"


def test_force_replaces_an_existing_spec(cli, tmp_path):
    root = write_autoresearch(tmp_path / "ar")
    (root / "overnight.toml").write_text("# mine\n")
    assert cli("init", root, "--force").exit_code == 0
    assert _spec(root)["metric"]["name"] == "val_bpb"


def test_a_fixed_budget_refuses_another_budget_and_screening(cli, tmp_path):
    root = write_autoresearch(tmp_path / "ar")
    assert cli("init", root, "--commit").exit_code == 0
    one_error_line(cli("run", root, "--budget", "5", "--experiments", "1"), "fixed", "drop --budget")
    one_error_line(cli("run", root, "--screen", "--experiments", "1"), "task.fixed_budget", "drop --screen")


def test_autoresearch_night_end_to_end(cli, tmp_path, python_on_path):
    """One command turns the repository into a night; the night runs on it unchanged."""
    root = write_autoresearch(tmp_path / "ar", budget=0.3)
    user_files = {p: (root / p).read_bytes() for p in ("train.py", "prepare.py", "program.md", "results.tsv")}
    result = cli("init", root, "--commit")
    assert result.exit_code == 0, result.output
    assert git_out(root, "show", "--stat", "--format=", "HEAD").split()[0] == "overnight.toml"
    run = cli("run", root, "--experiments", "5", "--baseline-seeds", "3", "--tag", "ar", "--quiet")
    assert run.exit_code == 0, run.output
    journal = open_journal(root)
    history = journal.experiments("ar")
    assert len(history) == 5 and history[0].value is not None
    assert journal.tag_info("ar")["config"]["screen"] is False  # off by itself: the budget is fixed
    runs = [r for e in history for r in e.runs if r.value is not None]
    assert runs and all(r.peak_memory_mb and r.peak_memory_mb >= 1000 for r in runs)  # peak_vram_mb, as printed
    assert all(r.training_seconds is not None for r in runs)
    tsv = (root / ".overnight" / "ar" / "results.tsv").read_text().splitlines()
    assert len(tsv) == 6 and tsv[1].split("\t")[2] != "0.0"  # memory_gb from peak_vram_mb
    for path, data in user_files.items():  # the user's files as they were, their results.tsv included
        assert (root / path).read_bytes() == data
    assert git_out(root, "status", "--porcelain") == ""


def test_generic_night_end_to_end(cli, tmp_path, python_on_path):
    root = write_generic(tmp_path / "g", style="equals")
    assert cli("init", root, "--budget", "1", "--commit").exit_code == 0
    run = cli("run", root, "--experiments", "4", "--judge", "greedy", "--tag", "g", "--quiet")
    assert run.exit_code == 0, run.output
    history = open_journal(root).experiments("g")
    assert len(history) == 4 and all(e.value is not None for e in history)
    assert 0.4 < history[0].value < 0.7  # val_acc as printed, maximized
