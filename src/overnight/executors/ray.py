"""`ray`: each run is a Ray task on a cluster; the driver (this controller) keeps the journal.

The candidate travels as a `git archive` of its commit (a tar of the task's files, kilobytes
for a typical task) and is unpacked on the worker in a temporary folder, so workers need no
clone of the repository and no filesystem shared with the driver. The worker runs it with the
same runner as a local slot (own process group, hard timeout, protected files hash-checked,
metric from the result file) and sends back the RunResult and the log, which the driver
writes under `.overnight/<tag>/runs/` as for a local run. Only the driver writes the journal.

The protected re-score (`task.rescore`) runs here, on the worker, right after every run, as
part of the Ray task: the run directory it reads (result.json, saved weights) lives in the
worker's temporary folder and is gone when the task returns. So on Ray every run pays for its
re-score inside its slot, where a local slot defers it to the controller and only before a
keep (rescorer.py); the runs arrive already re-scored (`summary["rescored"]`).

Each task asks for one GPU when the cluster has GPUs (Ray sets CUDA_VISIBLE_DEVICES on the
worker), else `cpus_per_run` CPUs. Ray's own retries are off: a run whose worker or node
dies resolves to INTERRUPTED, the controller journals that attempt and runs it again on
whatever node is alive, so the journal shows every attempt and nothing is counted twice.

What this does NOT do: install overnight on the workers (use the same environment, or a
`runtime_env`), ship files outside the git commit (data the task needs must already be on
each node, e.g. its cache), or survive the death of the driver (resume it: the journal knows).
"""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import tarfile
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path

import ray
import ray.exceptions

from overnight.errors import OvernightError
from overnight.executors.base import Executor, Job, Slot
from overnight.runner import RunRequest, RunResult, RunStatus, run_checkout
from overnight.task import TaskSpec

ARCHIVE_CACHE = 64  # commits kept packed on the driver (a candidate's replicates reuse its archive)


@ray.remote(max_retries=0)
def _run_remote(task: TaskSpec, archive: bytes, req_fields: dict) -> tuple[RunResult, bytes, str]:
    """On the worker: unpack, run, return (result, log bytes, node). The run executes on a
    thread so a cancel (KeyboardInterrupt here) stops its process group before returning."""
    tmp = Path(tempfile.mkdtemp(prefix="overnight-ray-"))
    node = f"{ray.util.get_node_ip_address()}/{ray.get_runtime_context().get_node_id()[:8]}"
    try:
        checkout = tmp / "checkout"
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(checkout, filter="data")
        req = RunRequest(run_dir=tmp / "run", worktree=checkout, **req_fields)
        stop = threading.Event()
        box: list[RunResult] = []
        worker = threading.Thread(target=lambda: box.append(run_checkout(task, req, stop)), daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                worker.join(0.2)
        except BaseException:  # cancelled: kill the run's process group, then let Ray report it
            stop.set()
            worker.join()
            raise
        log = tmp / "run" / "log.txt"
        return box[0], log.read_bytes() if log.exists() else b"", node
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, task: TaskSpec, address: str | None = None, slots: int | None = None,
                 cpus_per_run: int = 1):
        super().__init__(task)
        self._owns = not ray.is_initialized()
        if self._owns:
            try:
                # address None starts a local Ray instance; "auto" or host:port joins a cluster.
                ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING,
                         log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise OvernightError(f"cannot connect to Ray at {address or 'a new local instance'}: {exc} — "
                                     "see the README's Ray section (address, token authentication)") from None
        res = ray.cluster_resources()
        gpus = int(res.get("GPU", 0))
        self.resources = {"num_gpus": 1, "num_cpus": 0} if gpus else {"num_cpus": cpus_per_run}
        capacity = gpus or int(res.get("CPU", 1) // cpus_per_run)
        self._slots = [Slot(f"ray-{i}", "ray") for i in range(slots or max(1, capacity))]
        self._refs: dict[int, ray.ObjectRef] = {}
        self._nodes: dict[int, str] = {}
        self._archives: dict[str, bytes] = {}
        self._lock = threading.Lock()

    @property
    def slots(self) -> list[Slot]:
        return self._slots

    def _archive(self, commit: str) -> bytes:
        if commit not in self._archives:
            if len(self._archives) >= ARCHIVE_CACHE:
                self._archives.pop(next(iter(self._archives)))
            self._archives[commit] = subprocess.run(["git", "-C", str(self.task.root), "archive", "--format=tar",
                                                     commit], capture_output=True, check=True).stdout
        return self._archives[commit]

    def start(self, job: Job, slot: Slot) -> Future:
        fields = {"commit": job.commit, "seed": job.seed, "protected_hashes": job.protected_hashes,
                  "extra_env": slot.env}
        ref = _run_remote.options(**self.resources).remote(self.task, self._archive(job.commit), fields)
        with self._lock:
            self._refs[job.run_id] = ref
        out: Future = Future()
        ref.future().add_done_callback(lambda f: out.set_result(self._result(job, f)))
        return out

    def _result(self, job: Job, done: Future) -> RunResult:
        """The worker's result with its log written here; a lost worker is INTERRUPTED."""
        with self._lock:
            self._refs.pop(job.run_id, None)
        job.run_dir.mkdir(parents=True, exist_ok=True)
        log_path = job.run_dir / "log.txt"
        try:
            res, log, node = done.result()
        except ray.exceptions.RayTaskError as exc:  # the harness itself failed on the worker
            log_path.write_text(str(exc))
            return RunResult(RunStatus.CRASH, log_path=str(log_path), error=f"failed on the Ray worker: {exc}")
        except (ray.exceptions.RayError, Exception) as exc:  # node or worker died, or cancelled
            return RunResult(RunStatus.INTERRUPTED, log_path=str(log_path),
                             error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        log_path.write_bytes(log)
        res.log_path = str(log_path)
        with self._lock:
            self._nodes[job.run_id] = node
        return res

    def node_of(self, job: Job) -> str | None:
        with self._lock:
            return self._nodes.pop(job.run_id, None)

    def stop_all(self) -> None:
        with self._lock:
            refs = list(self._refs.values())
        for ref in refs:
            ray.cancel(ref, force=False)

    def close(self) -> None:
        self.stop_all()
        if self._owns:
            ray.shutdown()
