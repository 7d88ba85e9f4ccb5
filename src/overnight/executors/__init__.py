"""Executors: where runs execute. `make_executor(task, cfg)` builds one by its CLI name.

Ray is imported only inside `executors/ray.py`, when `--executor ray` is chosen; the rest of
overnight imports and runs without it.
"""

from __future__ import annotations

from overnight.errors import OvernightError
from overnight.executors.base import Executor, Job, Slot
from overnight.task import TaskSpec

EXECUTORS = ("local", "ray")


def make_executor(task: TaskSpec, cfg) -> Executor:
    """`cfg` is the loop's RunConfig (executor, slots, gpus, ray_address)."""
    if cfg.executor == "local":
        from overnight.executors.local import LocalExecutor, plan_slots

        return LocalExecutor(task, plan_slots(cfg.slots, cfg.gpus))
    if cfg.executor == "ray":
        if cfg.gpus is not None:
            raise OvernightError("--gpus pins local slots; with --executor ray, Ray places each run on a GPU")
        try:
            from overnight.executors.ray import RayExecutor
        except ImportError as exc:
            raise OvernightError(f"--executor ray needs Ray ({exc}) — pip install 'overnight[ray]'") from None
        return RayExecutor(task, address=cfg.ray_address, slots=cfg.slots, key=cfg.tag)
    raise OvernightError(f"unknown executor {cfg.executor!r} — choose one of: {', '.join(EXECUTORS)}")


__all__ = ["Executor", "Job", "Slot", "make_executor", "EXECUTORS"]
