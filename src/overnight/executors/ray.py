"""`ray`: each run is a Ray task on a cluster; the driver (this controller) keeps the journal.

The candidate travels as a `git archive` of its commit (a tar of the task's files, kilobytes
for a typical task) and is unpacked on the worker in a temporary folder, so workers need no
clone of the repository and no filesystem shared with the driver. The worker runs its `RunRequest`
as a local slot does (run/execute.py: own process group, hard timeout, protected files hash-checked,
metric from the result file) and sends back the RunResult and the log, which the driver
writes under `.overnight/<tag>/runs/` as for a local run. Only the driver writes the journal.
(This file is the driver's side; the tasks that run on the nodes are in ray_worker.py.)

The protected re-score (`task.rescore`) reads the run directory (result.json, saved weights),
which lives on the worker's node. As on a local slot it is not part of the run: the task
returns when training ends and leaves its run directory on the node; when the judge is about
to keep a candidate, rescorer.py asks `rescore` here (in a slot the controller holds for it),
which starts a second task pinned to that node (hard node affinity) on a fresh unpack of the
commit. It asks for what a run asks (a GPU, or `cpus_per_run` CPUs): Ray then never places it
beside a run on the same GPU or cores, and a run never beside it; it loads them as training
does, and a run beside it would time the re-score (on a GPU node: whichever GPU Ray gives it,
not necessarily the run's, which another run may be timing on now).
The held-out slice, if the task has one, travels with it (this process read it; the worker
never has the file) and its score is written back next to the run's log, so the keep rule
checks it as for a local run. A run directory goes when its experiment is decided (`release`,
a small pinned task), and at the end of the night (Ctrl-C included). Its place is journaled
with the run (summary["ray_dir"]): a driver killed before the keep leaves the directories on
the nodes, and the next one for the same repository and tag re-scores them there (`adopt`),
sweeping every other folder an earlier driver left.

A run directory that is gone when its re-score is wanted (its node left the cluster, or the
night was stopped in between) makes the re-score LOST: the scheduler turns that run into an
interrupted one and the judge asks for it again, so nothing is kept unre-scored.

Each run asks for one GPU when the cluster has GPUs (Ray sets CUDA_VISIBLE_DEVICES on the
worker), else `cpus_per_run` CPUs. Ray's own retries are off: a run whose worker or node
dies resolves to INTERRUPTED, the controller journals that attempt and runs it again on
whatever node is alive, so the journal shows every attempt and nothing is counted twice.

What this does NOT do: install overnight on the workers (use the same environment, or a
`runtime_env`), ship files outside the git commit (data the task needs must already be on
each node, e.g. its cache), or survive the death of the driver (resume it: the journal knows).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path

import ray
import ray.exceptions
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from overnight import gitops
from overnight.errors import OvernightError
from overnight.executors import ray_worker
from overnight.executors.base import Executor, Job, Slot
from overnight.records import Run, RunRequest, RunResult, RunStatus
from overnight.run import heldout_store, runfiles
from overnight.task import TaskSpec

ARCHIVE_CACHE = 64  # commits kept packed on the driver (a candidate's replicates reuse its archive)
WARM_SECONDS = 30.0  # the longest the night's start waits for its workers to be ready
RELEASE_SECONDS = 30.0  # how often decided runs' directories are removed from the nodes
PREFIX = "overnight-ray-"  # worker folders: PREFIX + <repository and tag key> + "-" + <driver session>


@dataclass(frozen=True)
class _Kept:
    """Where a finished run left its run directory for a re-score."""

    node_id: str
    folder: str
    gpus: str | None  # the run's CUDA_VISIBLE_DEVICES (a record: its re-score gets a GPU of its own)

    @staticmethod
    def of(summary: dict) -> _Kept | None:
        """The place journaled with the run (summary["ray_dir"]), for a driver after this one."""
        where = summary.get("ray_dir")
        try:
            return _Kept(str(where["node"]), str(where["folder"]), where.get("gpus"))
        except (TypeError, KeyError):
            return None


def _pinned(node_id: str, resources: dict | None = None) -> dict:
    """A task on `node_id` only, asking for `resources` (none: a cleanup beside the runs)."""
    return {
        "scheduling_strategy": NodeAffinitySchedulingStrategy(node_id, soft=False),
        **(resources or {"num_cpus": 0}),
    }


class RayExecutor(Executor):
    name = "ray"

    def __init__(
        self, task: TaskSpec, address: str | None = None, slots: int | None = None, cpus_per_run: int = 1, key: str = ""
    ):
        super().__init__(task)
        self._owns = not ray.is_initialized()
        if self._owns:
            try:
                # address None starts a local Ray instance; "auto" or host:port joins a cluster.
                ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise OvernightError(
                    f"cannot connect to Ray at {address or 'a new local instance'}: {exc} — "
                    "see docs/scaling.md (address, token authentication)"
                ) from None
        res = ray.cluster_resources()
        gpus = int(res.get("GPU", 0))
        self.resources = {"num_gpus": 1, "num_cpus": 0} if gpus else {"num_cpus": cpus_per_run}
        capacity = gpus or int(res.get("CPU", 1) // cpus_per_run)
        self._slots = [Slot(f"ray-{i}", "ray") for i in range(slots or max(1, capacity))]
        self._refs: dict[object, ray.ObjectRef] = {}  # run id, or ("rescore", run id) -> its task
        self._nodes: dict[int, str] = {}
        self._kept: dict[int, _Kept] = {}  # run id -> its run directory on a worker node
        self._garbage: dict[str, list[str]] = {}  # node id -> run directories of decided runs, to remove
        self._released = time.monotonic()
        self._archives: dict[str, bytes] = {}
        self._heldout = None  # the held-out slice in Ray's object store, put once
        self._lock = threading.Lock()
        # Folders of this repository and tag; those of a driver before this one are swept (adopt).
        key = hashlib.sha1(f"{task.root.resolve()}\0{key}".encode()).hexdigest()[:10]
        self._sweep = f"{PREFIX}{key}-"
        self._prefix = f"{self._sweep}{uuid.uuid4().hex[:8]}-"
        self._cleanups: list[ray.ObjectRef] = []
        # One worker per slot started and its imports done before the first run: otherwise the
        # night's first runs pay it inside their slots (2 s each on this 2-core machine, and not
        # saved by warm-ups left running: the runs then start workers of their own). Bounded: a
        # cluster still waiting for nodes (an autoscaler) starts its night anyway.
        warm = [ray_worker.warm.options(**self.resources, scheduling_strategy="SPREAD").remote() for _ in self._slots]
        ray.wait(warm, num_returns=len(warm), timeout=WARM_SECONDS)

    @property
    def slots(self) -> list[Slot]:
        return self._slots

    def _archive(self, commit: str) -> bytes:
        if commit not in self._archives:
            if len(self._archives) >= ARCHIVE_CACHE:
                self._archives.pop(next(iter(self._archives)))
            self._archives[commit] = gitops.run_git(
                ["-C", str(self.task.root), "archive", "--format=tar", commit], capture_output=True, check=True
            ).stdout
        return self._archives[commit]

    def start(self, job: Job, slot: Slot) -> Future:
        # The worker runs it in a folder of its own: the request's run directory and worktree
        # are this machine's, replaced there.
        req = replace(job.request, extra_env={**job.request.extra_env, **slot.env}, rescore=False)
        ref = ray_worker.run.options(**self.resources).remote(self.task, self._archive(req.commit), req, self._prefix)
        return self._track(job.run_id, ref, lambda f: self._result(job, f))

    def _track(self, key, ref: ray.ObjectRef, convert) -> Future:
        """A concurrent future of `convert(done ref future)`, cancellable by stop_all meanwhile."""
        with self._lock:
            self._refs[key] = ref
        out: Future = Future()

        def done(f):
            with self._lock:
                self._refs.pop(key, None)
            out.set_result(convert(f))

        ref.future().add_done_callback(done)
        return out

    def _result(self, job: Job, done: Future) -> RunResult:
        """The worker's result with its log written here; a lost worker is INTERRUPTED."""
        job.request.run_dir.mkdir(parents=True, exist_ok=True)
        log_path = job.request.run_dir / "log.txt"
        try:
            res, log, node, node_id, folder, gpus = done.result()
        except ray.exceptions.TaskCancelledError:  # stop_all (it may come as a RayTaskError subclass)
            return RunResult(RunStatus.INTERRUPTED, log_path=str(log_path), error="stopped by the controller")
        except ray.exceptions.RayTaskError as exc:  # the harness itself failed on the worker
            runfiles.write_fresh(log_path, str(exc))
            return RunResult(RunStatus.CRASH, log_path=str(log_path), error=f"failed on the Ray worker: {exc}")
        except (ray.exceptions.RayError, Exception) as exc:  # node or worker died, or cancelled
            return RunResult(
                RunStatus.INTERRUPTED,
                log_path=str(log_path),
                error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
            )
        runfiles.write_fresh(log_path, log)
        res.log_path = str(log_path)
        with self._lock:
            self._nodes[job.run_id] = node
            if self.task.rescore and res.status == RunStatus.OK:
                self._kept[job.run_id] = _Kept(node_id, folder, gpus)
                # Journaled with the run: a controller killed before the keep re-scores it there.
                res.summary["ray_dir"] = {"node": node_id, "folder": folder, "gpus": gpus}
        return res

    def node_of(self, job: Job) -> str | None:
        with self._lock:
            return self._nodes.pop(job.run_id, None)

    def adopt(self, runs: Iterable[Run]) -> None:
        """At the start of a night: the ended, not yet re-scored runs of undecided experiments,
        whose directories a killed driver before this one left on their nodes (their places
        are journaled), are re-scored there when wanted; every other folder of this repository
        and tag that an earlier driver left is removed from every node now."""
        with self._lock:
            for r in runs:
                kept = _Kept.of(r.summary or {})
                if kept is not None:
                    self._kept.setdefault(r.id, kept)
            wanted = sorted(Path(k.folder).name for k in self._kept.values())
        sweep = ray_worker.remove.options
        self._cleanups += [
            sweep(**_pinned(n["NodeID"])).remote([], self._sweep, self._prefix, wanted)
            for n in ray.nodes()
            if n.get("Alive")
        ]

    def rescore(self, run: Run, req: RunRequest, value: float, slot: Slot) -> Future:
        """The re-score of `run` on the node that holds its run directory, with a run's
        resources there (see above); LOST (INTERRUPTED with summary["lost"]) when that
        directory is not to be had."""
        with self._lock:
            kept = self._kept.get(run.id)
        if kept is None:
            out: Future = Future()
            out.set_result(
                RunResult(
                    RunStatus.INTERRUPTED,
                    summary={"lost": True},
                    error="where its run directory is, on the Ray cluster, is not known (the "
                    "controller was stopped since the run)",
                )
            )
            return out
        if self.task.heldout is not None and self._heldout is None:
            data = heldout_store.loaded(self.task)
            self._heldout = ray.put(data) if data is not None else None
        # The device is the one Ray assigns this task (CUDA_VISIBLE_DEVICES on the worker).
        env = {**req.extra_env, **slot.env}
        ref = ray_worker.rescore.options(**_pinned(kept.node_id, self.resources)).remote(
            self.task, self._archive(req.commit), kept.folder, replace(req, extra_env=env), value, self._heldout
        )
        return self._track(("rescore", run.id), ref, lambda f: self._rescored(req.run_dir, f))

    def _rescored(self, run_dir: Path, done: Future) -> RunResult:
        """The re-score's result, its logs (and held-out score) written next to the run's log."""
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            res, log, heldout_log = done.result()
        except ray.exceptions.TaskCancelledError:
            return RunResult(RunStatus.INTERRUPTED, error="stopped by the controller (during the re-score)")
        except ray.exceptions.RayTaskError as exc:  # the harness failed there: no keep
            return RunResult(RunStatus.MISMATCH, error=f"the protected re-score failed on the Ray worker: {exc}")
        except (ray.exceptions.RayError, Exception) as exc:  # its node died, or cannot be placed on any more
            return RunResult(
                RunStatus.INTERRUPTED, summary={"lost": True}, error=f"its node is gone ({type(exc).__name__})"
            )
        runfiles.write_fresh(run_dir / "rescore.txt", log)
        if heldout_log:
            runfiles.write_fresh(run_dir / "heldout.txt", heldout_log)
        res.log_path = str(run_dir / "rescore.txt")
        key = heldout_store.metric_key(self.task)
        if key in res.summary:  # a record beside the logs (the keep rule reads the journal's copy)
            runfiles.write_fresh(run_dir / "heldout.json", json.dumps({key: res.summary[key]}))
        return res

    def release(self, run_ids, now: bool = False) -> None:
        """Remove the run directories of decided runs from their nodes: one small task per node
        every RELEASE_SECONDS (or `now`), not one per decision; each task costs the cluster a
        little scheduling and the driver a submit, next to runs that want the CPU."""
        with self._lock:
            for run_id in set(run_ids) & set(self._kept):
                kept = self._kept.pop(run_id)
                self._garbage.setdefault(kept.node_id, []).append(kept.folder)
            if not now and time.monotonic() - self._released < RELEASE_SECONDS:
                return
            garbage, self._garbage, self._released = self._garbage, {}, time.monotonic()
        for node_id, folders in garbage.items():
            self._cleanups.append(ray_worker.remove.options(**_pinned(node_id)).remote(folders))
        self._cleanups = [r for r in self._cleanups if not _ready(r)]

    def stop_all(self) -> None:
        with self._lock:
            refs = list(self._refs.values())
        for ref in refs:
            ray.cancel(ref, force=False)

    def close(self) -> None:
        self.stop_all()
        with self._lock:
            kept = list(self._kept)
        self.release(kept, now=True)
        # Let the removals run before disconnecting (a node that died meanwhile fails them).
        if self._cleanups:
            ray.wait(self._cleanups, num_returns=len(self._cleanups), timeout=10)
        if self._owns:
            ray.shutdown()


def _ready(ref: ray.ObjectRef) -> bool:
    return bool(ray.wait([ref], timeout=0)[0])
