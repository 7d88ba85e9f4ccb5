"""`local`: N runs at once on this machine, one thread watching each run's process group.

Slots are pinned: on CUDA one GPU per slot through CUDA_VISIBLE_DEVICES (so each run sees
exactly one device, as `cuda:0`); on CPU the cores are split between slots through
OMP_NUM_THREADS and friends, so two runs do not fight over the same cores. GPUs are found
without importing torch (the controller should not pay for it, nor touch a device).

What this does NOT do: share one GPU between slots on purpose (ask for it with
`--gpus 0,0`), or check that a pinned GPU has memory free.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace

from overnight.errors import OvernightError
from overnight.executors.base import Executor, Job, Slot
from overnight.records import Run, RunRequest
from overnight.run.execute import execute
from overnight.run.scoring import rescore_run
from overnight.task import TaskSpec

# Variables that size the CPU thread pools of torch, numpy and their BLAS libraries.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def detect_gpus() -> list[str]:
    """The GPU ids this process may use: CUDA_VISIBLE_DEVICES when it is set (it may already
    be a subset chosen by a scheduler), otherwise one id per line of `nvidia-smi -L`."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [x.strip() for x in visible.split(",") if x.strip()]
        return [] if ids[:1] == ["-1"] else ids
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(row for row in out.splitlines() if row.startswith("GPU "))]


def plan_slots(slots: int | None, gpus: tuple[str, ...] | None, cpus: int | None = None) -> list[Slot]:
    """The local slots for `--slots N [--gpus IDS]`.

    GPUs (given, or detected when not): one slot per GPU unless N says otherwise; slot i is
    pinned to gpus[i % len(gpus)]. No GPU: N slots (default 1, see docs/scaling.md's measurement)
    sharing the cores evenly. With one CPU slot nothing is set: the task's own defaults hold.
    """
    if slots is not None and slots < 1:
        raise OvernightError(f"--slots must be at least 1, got {slots}")
    cpus = cpus or os.cpu_count() or 1
    ids = list(gpus) if gpus is not None else detect_gpus()
    n = slots or (len(ids) if ids else 1)
    threads = max(1, cpus // n)
    split = {v: str(threads) for v in THREAD_VARS} if n > 1 else {}
    out = []
    for i in range(n):
        if ids:
            gpu = ids[i % len(ids)]
            out.append(
                Slot(
                    str(i), "local", {**split, "CUDA_VISIBLE_DEVICES": gpu}, gpu=gpu, threads=threads if split else None
                )
            )
        else:
            out.append(Slot(str(i), "local", split, threads=threads if split else None))
    return out


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, task: TaskSpec, slots: list[Slot]):
        super().__init__(task)
        self._slots = slots
        self._stop = threading.Event()
        # One thread per slot: each only waits on its run's process (process.py polls it).
        self._pool = ThreadPoolExecutor(max_workers=len(slots), thread_name_prefix="overnight-slot")
        self._rescores, self._rescore_stop = self._rescore_pool(), threading.Event()

    def _rescore_pool(self) -> ThreadPoolExecutor:
        # One thread per re-score (it waits on processes); the slot it runs in is the
        # controller's to hold (night/rescorer.py), so it never runs beside a timed run.
        return ThreadPoolExecutor(max_workers=max(2, len(self._slots)), thread_name_prefix="overnight-rescore")

    @property
    def slots(self) -> list[Slot]:
        return self._slots

    def start(self, job: Job, slot: Slot) -> Future:
        # rescore=False: the slot is free as soon as training ends; the controller re-scores
        # only runs of a candidate about to be kept, each in a slot of its own (rescorer.py).
        req = replace(job.request, extra_env={**job.request.extra_env, **slot.env}, rescore=False)
        return self._pool.submit(execute, self.task, req, self._stop)

    def node_of(self, job: Job) -> str | None:
        return "local"

    def rescore(self, run: Run, req: RunRequest, value: float, slot: Slot) -> Future:
        """The run directory is on this machine: re-scored here, in a fresh worktree of its
        commit, pinned as `slot`'s runs are (its GPU, its share of the cores)."""
        req = replace(req, extra_env={**req.extra_env, **slot.env})
        return self._rescores.submit(rescore_run, self.task, req, value, self._rescore_stop)

    def stop_rescores(self, wait: bool = False) -> None:
        self._rescore_stop.set()
        if wait:  # then ready for another night (a library user may run one executor twice)
            self._rescores.shutdown(wait=True)
            self._rescores, self._rescore_stop = self._rescore_pool(), threading.Event()

    def stop_all(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        self._rescore_stop.set()
        self._pool.shutdown(wait=True)
        self._rescores.shutdown(wait=True)
