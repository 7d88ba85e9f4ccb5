"""Throughput of the nanogpt task's preset on this machine: tokens/s, and MFU on a known GPU.

Writes the task into a temporary folder (as `overnight init` would), runs the task's setup
(`prepare.py --setup`: data cache, compile warm-up; its time is the cold start a run no longer
pays), then `python train.py` with a short budget, and prints the figures of its result file,
plus the CPU (model, hardware bf16) and the machine's load (on a shared CPU, other work slows
training down and the figure with it).

`--precision fp32,bf16` measures each precision (OVERNIGHT_PRECISION) side by side, runs
interleaved, `--repeats` times each, and prints medians and the ratio: on a CPU without
hardware bf16, bf16 is emulated and far slower, which is why the task picks fp32 there.
`--cold` gives each run an empty compile cache, to measure what a cold compile costs a run.

Usage: python bench/task_throughput.py [--preset cpu|gpu] [--budget 20] [--data SPEC]
                                       [--precision auto,fp32,bf16] [--repeats 1] [--cold]
The data cache is $OVERNIGHT_CACHE (default ~/.cache/overnight), shared with real runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
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
    env = dict(
        os.environ,
        **(env or {}),
        OVERNIGHT_BUDGET=f"{budget:g}",
        OVERNIGHT_SEED=str(seed),
        OVERNIGHT_RESULT=str(result),
    )
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, "train.py"],
        cwd=task,
        env=env,
        text=True,
        stdout=subprocess.PIPE if quiet else None,
        stderr=subprocess.STDOUT if quiet else None,
    )
    wall = time.time() - t0
    if proc.returncode != 0:
        raise SystemExit(f"train.py failed (exit {proc.returncode}):\n{(proc.stdout or '')[-3000:]}")
    figures = json.loads(result.read_text())
    figures["wall_seconds"] = wall
    started = re.search(r"started training after ([0-9.]+)s", proc.stdout or "")
    figures["startup_seconds"] = float(started.group(1)) if started else float("nan")
    figures["load_average"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return figures


def cpu_line() -> str:
    """The CPU as the README quotes it: lscpu's model name and whether it has hardware bf16."""
    import torch

    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name"))
    except (OSError, StopIteration):
        pass
    emulated = (
        " (AVX2 emulated: ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA)" if os.environ.get("ONEDNN_MAX_CPU_ISA") else ""
    )
    return (
        f"{model}, {os.cpu_count()} cores | avx512_bf16 {torch.cpu._is_avx512_bf16_supported()}, "
        f"amx {torch.cpu._is_amx_tile_supported()}, kernels {torch.backends.cpu.get_cpu_capability()}{emulated}"
    )


def setup(task: Path, env: dict) -> float:
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, "prepare.py", "--setup"], cwd=task, env={**os.environ, **env}, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"prepare.py --setup failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return time.time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu", choices=["cpu", "gpu"])
    ap.add_argument("--budget", type=float, default=20.0, help="training seconds of the measured run")
    ap.add_argument("--data", default=None, help="data spec, as for `overnight init --data`")
    ap.add_argument("--precision", default="auto", help="comma-separated: auto, fp32, bf16")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each precision, interleaved")
    ap.add_argument("--cold", action="store_true", help="an empty compile cache for every run (no setup)")
    ap.add_argument(
        "--emulate-avx2",
        action="store_true",
        help="torch's kernels and oneDNN limited to AVX2 (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA): "
        "a CPU without hardware bf16, on one that has it",
    )
    args = ap.parse_args()
    if args.emulate_avx2:  # inherited by every process below
        os.environ.update(ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2")
        # A compile cache of its own: inductor's cache key leaves the ISA out, and AVX-512
        # kernels cached by a plain run, loaded under AVX2, gave NaN at step 0 (seen).
        cache = Path(os.environ.get("OVERNIGHT_CACHE") or Path.home() / ".cache" / "overnight")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache / "inductor-avx2")

    task = make_task(args.preset, args.data)
    print(f"task {task} | preset {args.preset} | {cpu_line()}", flush=True)
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    rows: dict[str, list[dict]] = {p: [] for p in precisions}
    for p in precisions:
        if not args.cold:
            s = setup(task, {"OVERNIGHT_PRECISION": p})
            print(f"setup {p}: {s:.1f}s (data cache if missing, compile warm-up; outside every run)", flush=True)
    for i in range(args.repeats):
        for p in precisions:
            env = {"OVERNIGHT_PRECISION": p}
            if args.cold:
                env["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-cold-")
            r = run_once(task, args.budget, env=env)
            rows[p].append(r)
            print(
                f"{p:>5} run {i + 1}: {r['tokens_per_second']:,.0f} tokens/s, {r['num_steps']} steps, "
                f"val_bpb {r['val_bpb']:.4f}, start-up {r['startup_seconds']:.1f}s, wall {r['wall_seconds']:.1f}s, "
                f"precision {r.get('precision', '?')}, load {r['load_average']:.2f}",
                flush=True,
            )
    med = {p: statistics.median(r["tokens_per_second"] for r in rs) for p, rs in rows.items()}
    for p, rs in rows.items():
        print(
            f"{p:>5} median: tokens_per_second {med[p]:,.0f} | val_bpb "
            f"{statistics.median(r['val_bpb'] for r in rs):.4f} | start-up "
            f"{statistics.median(r['startup_seconds'] for r in rs):.1f}s | wall "
            f"{statistics.median(r['wall_seconds'] for r in rs):.1f}s | mfu "
            f"{statistics.median(r['mfu_percent'] for r in rs):.2f}% | "
            f"peak {max(r['peak_memory_mb'] for r in rs):.0f} MB"
        )
    if len(precisions) > 1:
        first = precisions[0]
        for p in precisions[1:]:
            print(f"ratio {first}/{p}: {med[first] / med[p]:.2f}x")
    print(f"load_average: {os.getloadavg()[0]:.2f} (1-minute, at the end; > cores means a shared machine)")


if __name__ == "__main__":
    main()
