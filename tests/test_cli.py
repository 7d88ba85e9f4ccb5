"""The commands, through click's CliRunner: one-line errors, the status contract, the report."""

from __future__ import annotations

import json
import struct

import pytest

from overnight import gitops
from overnight.night.tags import open_journal
from overnight.records import ExpStatus
from overnight.testing.gitutil import git_out
from overnight.testing.procs import one_error_line


def test_init_toy(cli, tmp_path):
    dest = tmp_path / "night"
    result = cli("init", dest, "--task", "toy")
    assert result.exit_code == 0, result.output
    assert git_out(dest, "rev-list", "--count", "HEAD").strip() == "1"
    assert git_out(dest, "status", "--porcelain") == ""
    tracked = set(git_out(dest, "ls-files").split())
    assert {"train.py", "evaluate.py", "overnight.toml"} <= tracked
    assert gitops.head(dest)[:7] in result.stdout


def test_init_into_non_empty_dir(cli, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    one_error_line(cli("init", tmp_path, "--task", "toy"), "not empty")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_init_toy_rejects_data(cli, tmp_path):
    one_error_line(cli("init", tmp_path / "x", "--task", "toy", "--data", "text:/x"), "--data")
    assert not (tmp_path / "x").exists()  # nothing half-written is left


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """One real run of 5 experiments, shared by the read-only command tests below."""
    from click.testing import CliRunner

    from overnight.cli import main

    root = tmp_path_factory.mktemp("cli") / "toy"
    runner = CliRunner()
    assert runner.invoke(main, ["init", str(root), "--task", "toy"]).exit_code == 0
    result = runner.invoke(
        main,
        [
            "run",
            str(root),
            "--experiments",
            "5",
            "--proposer",
            "random",
            "--judge",
            "greedy",
            "--budget",
            "1",
            "--tag",
            "cli",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    return root, result


def test_run_output(night):
    root, result = night
    assert "overnight cli: val_loss (minimize), budget 1 s, proposer random, judge greedy" in result.stdout
    for i in range(1, 6):
        assert f"#{i} " in result.stdout
    assert "5 experiments" in result.stdout


def test_status_json(cli, night):
    root, _ = night
    result = cli("status", root, "--json")
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert {"metric", "goal", "experiments", "kept", "crashed", "baseline", "best"} <= set(d)
    assert (d["metric"], d["goal"], d["experiments"], d["crashed"]) == ("val_loss", "minimize", 5, 0)
    # Cross-check against the journal, results.tsv and git rather than the same code path.
    j = open_journal(root)
    h = j.experiments("cli")
    kept = [e for e in h if e.status == ExpStatus.KEPT and e.parent_id is not None]
    assert d["kept"] == len(kept)
    assert d["baseline"] == {"id": 1, "value": h[0].value, "runs": len(h[0].ok_values), "measuring": False}
    best_value = min(e.value for e in h if e.status == ExpStatus.KEPT)
    best = next(e for e in h if e.status == ExpStatus.KEPT and e.value == best_value)
    assert (d["best"]["id"], d["best"]["value"], d["best"]["commit"]) == (best.id, best.value, best.commit_sha)
    assert d["best"]["commit"] == gitops.rev_parse(root, "overnight/cli")
    rows = (root / ".overnight" / "cli" / "results.tsv").read_text().splitlines()[1:]
    assert float(rows[0].split("\t")[1]) == pytest.approx(d["baseline"]["value"], abs=1e-6)
    assert sum(r.split("\t")[3] == "keep" for r in rows) == d["kept"] + 1  # + the baseline
    j.close()


def test_status_text(cli, night):
    root, _ = night
    result = cli("status", root)
    assert result.exit_code == 0
    assert "cli: 5 experiments" in result.stdout and "baseline" in result.stdout


def test_report(cli, night, tmp_path):
    root, _ = night
    out = tmp_path / "rep"
    result = cli("report", root, "--out", out)
    assert result.exit_code == 0, result.output
    png = (out / "progress.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
    assert width > 500 and height > 300
    md = (out / "report.md").read_text()
    d = json.loads(cli("status", root, "--json").stdout)
    assert f"baseline: {d['baseline']['value']:.6f} (#1)" in md
    assert f"best: {d['best']['value']:.6f} (#{d['best']['id']}" in md
    assert md.count("\n| ") >= 6  # the table of all experiments


def test_report_default_location(cli, night):
    root, _ = night
    assert cli("report", root).exit_code == 0
    assert (root / ".overnight" / "cli" / "progress.png").is_file()


def test_show(cli, night):
    root, _ = night
    j = open_journal(root)
    e = j.experiment(2)
    j.close()
    result = cli("show", 2, root)
    assert result.exit_code == 0, result.output
    # Printed whole, not wrapped at 80 columns (the description is longer than that).
    assert len(e.description) > 80 and e.description in result.stdout
    assert e.diff.strip() in result.stdout  # the diff, verbatim: it applies as a patch
    assert e.status.value in result.stdout
    one_error_line(cli("show", 99, root), "no experiment 99")


def test_run_without_spec(cli, tmp_path):
    gitops.git(tmp_path, "init", "-q")
    one_error_line(cli("run", tmp_path, "--experiments", "2"), "no overnight.toml")


def test_run_outside_git(cli, tmp_path):
    one_error_line(cli("run", tmp_path, "--experiments", "2"), "not a git repository")


def test_bad_field_names_it(cli, task_repo):
    root = task_repo(
        "print(1)\n",
        toml="""\
        [task]
        command = "{python} train.py"
        editable = ["train.py"]
        budget = "soon"
        [metric]
        name = "score"
        """,
    )
    one_error_line(cli("run", root, "--experiments", "2"), "task.budget")


def test_bad_knob_names_it(cli, toy_repo):
    spec = toy_repo / "overnight.toml"
    spec.write_text(spec.read_text() + "LEARNING_RATE = {low = 1}\n")
    gitops.git(toy_repo, "commit", "-qam", "bad knob")
    one_error_line(cli("run", toy_repo, "--experiments", "2"), "knobs.LEARNING_RATE")


def test_baseline_crash_is_one_line(cli, task_repo):
    root = task_repo("raise SystemExit(3)\n")
    line = one_error_line(cli("run", root, "--experiments", "2", "--quiet"), "baseline")
    assert "crash" in line


def test_bad_budget_and_experiments(cli, toy_repo):
    one_error_line(cli("run", toy_repo, "--budget", "0", "--experiments", "2"), "--budget")
    one_error_line(cli("run", toy_repo, "--experiments", "0"), "--experiments")


def test_status_without_journal(cli, toy_repo):
    one_error_line(cli("status", toy_repo, "--json"), "no journal")


def test_status_unknown_tag(cli, night):
    root, _ = night
    one_error_line(cli("status", root, "--tag", "nope"), "nope", "cli")
