"""`overnight run --log-to wandb|mlflow`: a toy night's experiments reach the real libraries,
offline (W&B's offline mode, read back from its run files; an MLflow local file store), and a
failing tracker leaves the night running with a warning in status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from overnight.night.tags import open_journal
from overnight.testing.toy import write_toy

N = 5


def _night(cli, root, *extra):
    result = cli("run", root, "--experiments", N, "--proposer", "random", "--judge", "greedy", "--tag", "t", *extra)
    assert result.exit_code == 0, result.output
    return open_journal(root).experiments("t")


def test_wandb_offline_receives_every_experiment(cli, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from overnight.testing.wandb_offline import read_offline_runs

    wandb_dir = tmp_path / "wandb-dir"
    wandb_dir.mkdir()
    for key, value in {"WANDB_MODE": "offline", "WANDB_DIR": str(wandb_dir), "WANDB_SILENT": "true"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("WANDB_PROJECT", "toy-nights")
    history = _night(cli, write_toy(tmp_path / "toy"), "--log-to", "wandb")
    runs = read_offline_runs(wandb_dir)
    experiments = sorted((r for r in runs if r["job_type"] == "experiment"), key=lambda r: r["summary"]["id"])
    assert [r["name"] for r in experiments] == [f"t #{e.id}" for e in history]
    assert {r["group"] for r in runs} == {"t"} and {r["project"] for r in runs} == {"toy-nights"}
    for run, exp in zip(experiments, history):
        assert run["summary"]["status"] == exp.status.value
        assert run["summary"]["val_loss"] == pytest.approx(exp.value)
        assert [h["val_loss"] for h in run["history"]] == pytest.approx([r.value for r in exp.runs])
        assert [h["seed"] for h in run["history"]] == [r.seed for r in exp.runs]
        assert all("wall_seconds" in h for h in run["history"])
        assert run["config"]["proposer"] == exp.proposer
        assert ("diff", f"diff-t-{exp.id}") in run["artifacts"] or not exp.diff
        assert {k for k in exp.params if not k.startswith("_")} <= set(run["config"])
    night = [r for r in runs if r["job_type"] == "night"]
    kept = [e for e in history if e.status.value == "kept"]
    assert len(night) == 1 and night[0]["summary"]["kept"] == len(kept)
    assert night[0]["summary"]["best_val_loss"] == pytest.approx(kept[-1].value)
    assert night[0]["summary"]["kept_chain"] == " -> ".join(f"#{e.id}" for e in kept)


def test_mlflow_local_store_receives_every_experiment(cli, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store in maintenance mode
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "toy-nights")
    history = _night(cli, write_toy(tmp_path / "toy"), "--log-to", "mlflow")
    client = MlflowClient()
    exp_id = client.get_experiment_by_name("toy-nights").experiment_id
    runs = client.search_runs([exp_id], max_results=100)
    (night,) = [r for r in runs if r.data.tags.get("overnight.kind") == "night"]
    children = sorted(
        (r for r in runs if r.data.tags.get("mlflow.parentRunId") == night.info.run_id), key=lambda r: r.info.start_time
    )
    assert [r.info.run_name for r in children] == [f"t #{e.id}" for e in history]
    for run, exp in zip(children, history):
        assert run.data.tags["overnight.status"] == exp.status.value
        assert run.data.metrics["judged_val_loss"] == pytest.approx(exp.value)
        values = [m.value for m in client.get_metric_history(run.info.run_id, "val_loss")]
        assert sorted(values) == pytest.approx(sorted(r.value for r in exp.runs))
        assert run.data.params["proposer"] == exp.proposer
        if exp.diff:
            path = client.download_artifacts(run.info.run_id, "diff.patch", str(tmp_path))
            assert Path(path).read_text() == exp.diff
    kept = [e for e in history if e.status.value == "kept"]
    assert night.data.tags["overnight.kept_chain"] == " -> ".join(f"#{e.id}" for e in kept) or not kept
    night = client.get_run(night.info.run_id)
    assert night.data.metrics["kept"] == len(kept) and night.info.status == "FINISHED"


def test_a_failing_tracker_never_stops_the_night(cli, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the store should be\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", blocked.as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    root = write_toy(tmp_path / "toy")
    history = _night(cli, root, "--log-to", "mlflow")
    assert len(history) == N  # the night ran to its end
    status = json.loads(cli("status", root, "--tag", "t", "--json").stdout)
    assert status["tracker"] and status["tracker"][0].startswith("mlflow:")
    assert "tracker:" in cli("status", root, "--tag", "t").stdout


def test_an_unknown_tracker_is_refused_before_the_night(cli, tmp_path):
    root = write_toy(tmp_path / "toy")
    result = cli("run", root, "--log-to", "tensorboard")
    assert result.exit_code == 2 and "'tensorboard' is not one of 'wandb', 'mlflow'" in result.output
    assert not (root / ".overnight").exists()
