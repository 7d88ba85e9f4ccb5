"""The Ray tasks of executors/ray.py: what runs on the cluster's nodes, not on the driver.

A run (`run`): unpack the commit's archive into a fresh folder, run it as a
local slot does (run/execute.py), send back the result and the log, and leave the run directory in the folder
when the run may be re-scored. Its re-score (`rescore`): on the same node (the driver pins
it there), a fresh unpack of the commit re-scores that run directory, the held-out score
included when the driver sends the slice. `warm` starts a worker before the first run;
`remove` deletes folders of decided runs, and sweeps those an earlier driver left.

Each runs its work on a thread, so a cancel from the driver (a KeyboardInterrupt in the Ray
worker) stops the run's process group before the task reports the cancel.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
import threading
import uuid
from dataclasses import replace
from pathlib import Path

import ray

from overnight.records import RunRequest, RunResult, RunStatus
from overnight.run import runfiles
from overnight.run.execute import run_checkout
from overnight.run.scoring import rescore_checkout
from overnight.task import TaskSpec


def unpack(archive: bytes, into: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")


def on_thread(fn, stop: threading.Event):
    """fn() on a thread, so a cancel (KeyboardInterrupt in this Ray worker) sets `stop`, which
    stops fn's process group, before the task reports the cancel."""
    box: list = []
    worker = threading.Thread(target=lambda: box.append(fn()), daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.2)
    except BaseException:
        stop.set()
        worker.join()
        raise
    return box[0]


def read(path: Path) -> bytes:
    """A log of the run directory, refused (empty) if the run left a link or FIFO there."""
    try:
        return runfiles.read_capped(path, 256 << 20, tail=True)
    except OSError:
        return b""


@ray.remote(max_retries=0)
def run(task: TaskSpec, archive: bytes, request: RunRequest, folder_prefix: str) -> tuple:
    """On the worker: unpack, run `request` there (its run directory and worktree are the
    driver's, replaced by a fresh folder's), return (result, log bytes, node, node id, folder,
    GPUs). The folder (with the run directory) stays when the run may be re-scored, else goes."""
    tmp = Path(tempfile.mkdtemp(prefix=folder_prefix))
    ctx = ray.get_runtime_context()
    node = f"{ray.util.get_node_ip_address()}/{ctx.get_node_id()[:8]}"
    keep = False
    try:
        checkout = tmp / "checkout"
        unpack(archive, checkout)
        req = replace(request, run_dir=tmp / "run", worktree=checkout, rescore=False)
        stop = threading.Event()
        res = on_thread(lambda: run_checkout(task, req, stop), stop)
        keep = bool(task.rescore) and res.status == RunStatus.OK
        return (
            res,
            read(tmp / "run" / "log.txt"),
            node,
            ctx.get_node_id(),
            str(tmp),
            os.environ.get("CUDA_VISIBLE_DEVICES"),
        )
    finally:
        shutil.rmtree(tmp / "checkout" if keep else tmp, ignore_errors=True)


@ray.remote(max_retries=0)
def rescore(
    task: TaskSpec, archive: bytes, folder: str, request: RunRequest, value: float, heldout: bytes | None
) -> tuple:
    """On the run's node: a fresh unpack of the commit re-scores the run directory the run left
    in `folder` (`request` as for `run`). Returns (result, re-score log, held-out log)."""
    tmp = Path(folder)
    if not (tmp / "run").is_dir():
        return (
            RunResult(RunStatus.INTERRUPTED, error=f"the run directory {tmp / 'run'} is gone", summary={"lost": True}),
            b"",
            b"",
        )
    checkout = tmp / f"rescore-{uuid.uuid4().hex[:8]}"
    try:
        unpack(archive, checkout)
        req = replace(request, run_dir=tmp / "run", worktree=checkout)
        stop = threading.Event()
        res = on_thread(lambda: rescore_checkout(task, req, value, stop, heldout), stop)
        return res, read(tmp / "run" / "rescore.txt"), read(tmp / "run" / "heldout.txt")
    finally:
        shutil.rmtree(checkout, ignore_errors=True)


@ray.remote(max_retries=0)
def warm() -> None:
    """Nothing to do: the worker process that runs it has started and imported this module (and
    the run's modules), then goes back to Ray's pool, where a run reuses it rather than pay that again."""


@ray.remote(max_retries=0, num_cpus=0)
def remove(folders: list[str], sweep: str | None = None, keep_prefix: str = "", wanted: tuple = ()) -> int:
    """On one node: remove these run folders, and with `sweep` every folder named so that a
    driver before this one (`keep_prefix` is this one's) left behind, but the `wanted` ones."""
    paths = [Path(f) for f in folders]
    if sweep:
        paths += [
            p
            for p in Path(tempfile.gettempdir()).glob(sweep + "*")
            if not p.name.startswith(keep_prefix) and p.name not in wanted
        ]
    for p in paths:
        shutil.rmtree(p, ignore_errors=True)
    return len(paths)
