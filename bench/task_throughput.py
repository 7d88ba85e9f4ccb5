"""Throughput of the nanogpt task's preset on this machine: tokens/s, and MFU on a known GPU.

Writes the task into a temporary folder (as `overnight init` would), runs `python train.py`
once with a short budget and prints the figures of its result file, plus the machine's load
(on a shared CPU, other work slows training down and the figure with it).

Usage: python bench/task_throughput.py [--preset cpu|gpu] [--budget 20] [--data SPEC]
The cache is $OVERNIGHT_CACHE (default ~/.cache/overnight), shared with real runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from overnight.tasks import write_task


def make_task(preset: str, data: str | None, folder: Path | None = None) -> Path:
    """A fresh copy of the task, written exactly as `overnight init` writes it."""
    dest = Path(folder or tempfile.mkdtemp(prefix=f"nanogpt-{preset}-"))
    dest.mkdir(parents=True, exist_ok=True)
    write_task("nanogpt", dest, preset, data)
    return dest


def run_once(task: Path, budget: float, seed: int = 42, quiet: bool = True, env: dict | None = None) -> dict:
    """One `python train.py` with the harness's environment (plus `env`, e.g. a slot's
    pinning); its result file plus wall time."""
    result = task / f"result-{seed}-{budget:g}-{time.time_ns()}.json"
    env = dict(os.environ, **(env or {}), OVERNIGHT_BUDGET=f"{budget:g}", OVERNIGHT_SEED=str(seed),
               OVERNIGHT_RESULT=str(result))
    t0 = time.time()
    proc = subprocess.run([sys.executable, "train.py"], cwd=task, env=env, text=True,
                          stdout=subprocess.PIPE if quiet else None, stderr=subprocess.STDOUT if quiet else None)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise SystemExit(f"train.py failed (exit {proc.returncode}):\n{(proc.stdout or '')[-3000:]}")
    figures = json.loads(result.read_text())
    figures["wall_seconds"] = wall
    figures["load_average"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu", choices=["cpu", "gpu"])
    ap.add_argument("--budget", type=float, default=20.0, help="training seconds of the measured run")
    ap.add_argument("--data", default=None, help="data spec, as for `overnight init --data`")
    args = ap.parse_args()

    task = make_task(args.preset, args.data)
    print(f"task {task} | preset {args.preset} | {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores", flush=True)
    r = run_once(task, args.budget)
    print(f"tokens_per_second: {r['tokens_per_second']:.0f}")
    print(f"mfu_percent:       {r['mfu_percent']:.2f}")
    print(f"num_params_M:      {r['num_params_M']:.2f}")
    print(f"num_steps:         {r['num_steps']}")
    print(f"training_seconds:  {r['training_seconds']:.1f}")
    print(f"wall_seconds:      {r['wall_seconds']:.1f}   (start-up, compile and evaluation included)")
    print(f"peak_memory_mb:    {r['peak_memory_mb']:.0f}")
    print(f"val_bpb:           {r['val_bpb']:.4f}")
    print(f"load_average:      {r['load_average']:.2f}   (1-minute, at the end; > cores means a shared machine)")


if __name__ == "__main__":
    main()
