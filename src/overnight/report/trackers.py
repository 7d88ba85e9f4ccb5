"""`overnight run --log-to wandb|mlflow`: the night in the tracker researchers already use.

Each finished experiment becomes a run of its own (W&B: grouped by the tag; MLflow: a child
of the night's run) with its parameters, its diff as an artifact, every run's metric with its
seed, memory and duration, and the verdict; when the night ends, the night's best and its kept
chain become summary values. The tracker's own configuration is the user's (WANDB_PROJECT,
WANDB_MODE, MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_NAME, ...). A tracker that fails never stops
the night: the failure is journaled as a `tracker` event, which status shows as a warning.
"""

from __future__ import annotations

import importlib
import os

from overnight.errors import OvernightError
from overnight.night.config import Observer
from overnight.records import EventKind, Experiment, ExpStatus

TRACKERS = ("wandb", "mlflow")
PACKAGES = {"wandb": "wandb", "mlflow": "mlflow"}


def experiment_record(exp: Experiment, metric: str) -> dict:
    """What a tracker is given for one experiment, tracker-neutral."""
    params = {k: v for k, v in exp.params.items() if not k.startswith("_")}
    runs = [
        {
            metric: r.value,
            "seed": r.seed,
            "peak_memory_mb": r.peak_memory_mb,
            "wall_seconds": r.wall_seconds,
            "training_seconds": r.training_seconds,
        }
        for r in exp.runs
    ]
    return {
        "name": f"{exp.tag} #{exp.id}",
        "params": {**params, "proposer": exp.proposer, "parent": exp.parent_id},
        "runs": runs,
        "summary": {
            "id": exp.id,
            metric: exp.value,
            "status": exp.status.value,
            "reason": exp.reason or "",
            "description": exp.description,
            "runs": len(exp.runs),
        },
        "diff": exp.diff or "",
    }


def night_summary(history: list[Experiment], metric: str) -> dict:
    kept = [e for e in history if e.status == ExpStatus.KEPT]
    best = kept[-1] if kept else None
    return {
        "experiments": len(history),
        "kept": len(kept),
        "kept_chain": " -> ".join(f"#{e.id}" for e in kept),
        f"baseline_{metric}": history[0].value if history else None,
        f"best_{metric}": best.value if best else None,
        "best_id": best.id if best else None,
    }


class WandbTracker:
    name = "wandb"

    def __init__(self, tag: str, root) -> None:
        import wandb

        self.wandb, self.tag = wandb, tag
        self.project = os.environ.get("WANDB_PROJECT", "overnight")

    def experiment(self, record: dict) -> None:
        run = self.wandb.init(
            project=self.project,
            group=self.tag,
            job_type="experiment",
            name=record["name"],
            config=record["params"],
            reinit="create_new",
        )
        try:
            for step, values in enumerate(record["runs"]):
                run.log({k: v for k, v in values.items() if v is not None}, step=step)
            run.summary.update({k: v for k, v in record["summary"].items() if v is not None})
            if record["diff"]:
                artifact = self.wandb.Artifact(f"diff-{self.tag}-{record['summary']['id']}", type="diff")
                with artifact.new_file("diff.patch") as f:
                    f.write(record["diff"])
                run.log_artifact(artifact)
        finally:
            run.finish()

    def summary(self, values: dict) -> None:
        run = self.wandb.init(
            project=self.project, group=self.tag, job_type="night", name=self.tag, reinit="create_new"
        )
        try:
            run.summary.update({k: v for k, v in values.items() if v is not None})
        finally:
            run.finish()
            self.wandb.teardown()  # the night's last call: W&B's service writes out what it holds


class MlflowTracker:
    name = "mlflow"

    def __init__(self, tag: str, root) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient()
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "overnight")
        found = self.client.get_experiment_by_name(name)
        self.experiment_id = found.experiment_id if found else self.client.create_experiment(name)
        # The night's run: found again by its tag when the night resumes.
        query = f"tags.`overnight.tag` = '{tag}' and tags.`overnight.kind` = 'night'"
        same = self.client.search_runs([self.experiment_id], query)
        if same:
            self.parent = same[0].info.run_id
        else:
            self.parent = self.client.create_run(
                self.experiment_id, run_name=tag, tags={"overnight.tag": tag, "overnight.kind": "night"}
            ).info.run_id
        self.tag = tag

    def experiment(self, record: dict) -> None:
        from mlflow.entities import Metric, Param

        tags = {"mlflow.parentRunId": self.parent, "overnight.tag": self.tag, "overnight.kind": "experiment"}
        tags |= {f"overnight.{k}": str(v) for k, v in record["summary"].items() if isinstance(v, str)}
        run_id = self.client.create_run(self.experiment_id, run_name=record["name"], tags=tags).info.run_id
        try:
            params = [Param(k, str(v)[:500]) for k, v in record["params"].items()]
            metrics = [
                Metric(k, float(v), 0, step)
                for step, values in enumerate(record["runs"])
                for k, v in values.items()
                if isinstance(v, (int, float))
            ]
            # The judged value and counts as run-level metrics (`judged_<metric>`: the runs' own
            # values carry the metric's name, one per step).
            numbers = {k: v for k, v in record["summary"].items() if isinstance(v, (int, float))}
            metrics += [Metric(f"judged_{k}", float(v), 0, 0) for k, v in numbers.items()]
            self.client.log_batch(run_id, metrics=metrics, params=params)
            if record["diff"]:
                self.client.log_text(run_id, record["diff"], "diff.patch")
        finally:
            self.client.set_terminated(run_id)

    def summary(self, values: dict) -> None:
        for k, v in values.items():
            if isinstance(v, (int, float)):
                self.client.log_metric(self.parent, k, float(v))
            elif v:
                self.client.set_tag(self.parent, f"overnight.{k}", str(v))
        self.client.set_terminated(self.parent)


def make_trackers(names: tuple[str, ...], tag: str, root) -> tuple[list, list[str]]:
    """(the trackers asked for, why any could not start). A missing library is one line that
    says what to install; a tracker that fails to start is a warning, the night goes on."""
    out, failed = [], []
    for name in dict.fromkeys(names):
        try:
            importlib.import_module(PACKAGES[name])
        except ImportError:
            raise OvernightError(
                f"--log-to {name}: the {name} package is not installed — pip install 'overnight[{name}]'"
            ) from None
        try:
            out.append((WandbTracker if name == "wandb" else MlflowTracker)(tag, root))
        except Exception as exc:  # its server, its credentials: the night does not depend on them
            failed.append(f"{name}: {type(exc).__name__}: {str(exc)[:200]}")
    return out, failed


class TrackingObserver(Observer):
    """The CLI's observer, plus the trackers on each finished experiment; their failures
    become `tracker` events (status shows them) and the night goes on."""

    def __init__(self, inner: Observer, trackers: list, journal, tag: str, metric: str) -> None:
        self.inner, self.trackers, self.journal, self.tag, self.metric = inner, trackers, journal, tag, metric

    def experiment_started(self, exp, run_index):
        self.inner.experiment_started(exp, run_index)

    def progress(self, exp, elapsed):
        self.inner.progress(exp, elapsed)

    def message(self, text):
        self.inner.message(text)

    def slots(self, rows):
        self.inner.slots(rows)

    def experiment_finished(self, exp: Experiment) -> None:
        self.inner.experiment_finished(exp)
        record = experiment_record(exp, self.metric)
        for tracker in self.trackers:
            self._guard(tracker, lambda t=tracker: t.experiment(record))

    def night_over(self, history: list[Experiment]) -> None:
        values = night_summary(history, self.metric)
        for tracker in self.trackers:
            self._guard(tracker, lambda t=tracker: t.summary(values))

    def _guard(self, tracker, call) -> None:
        try:
            call()
        except Exception as exc:  # a tracker's failure is a warning, never the night's end
            text = f"{tracker.name}: {type(exc).__name__}: {str(exc)[:200]}"
            self.journal.event(self.tag, EventKind.TRACKER, text)
            self.inner.message(f"tracker failed (the night goes on): {text}")
