"""Does sharing a device between two slots pay? tokens/s of the nanogpt task, one run alone
against two at once on the same device, each pinned as `overnight run` pins its slots.

On a GPU machine (the question of issue 6: two slots on one GPU, `--slots 2 --gpus 0,0`):

    python bench/slot_share.py --preset gpu --budget 60

On CPU the two slots split the cores (OMP_NUM_THREADS and friends, executors/local.py), the
measurement behind the CPU default of one slot:

    python bench/slot_share.py --preset cpu --budget 20

Prints each run's tokens/s, val_bpb and peak memory, and the pair's total over the single
run's. Above 1.0 the device had room a single run left idle; training steps per run fall
either way, so a shared slot trains each candidate less within its budget (val_bpb shows by
how much). A first short run builds the data cache and is not counted.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from task_throughput import make_task, run_once  # noqa: E402

from overnight.executors.local import detect_gpus, plan_slots  # noqa: E402


def show(label: str, r: dict) -> None:
    print(
        f"{label:<14} tokens/s {r['tokens_per_second']:>10.0f} | steps {r['num_steps']:>5} | "
        f"val_bpb {r['val_bpb']:.4f} | peak {r['peak_memory_mb']:.0f} MB | mfu {r['mfu_percent']:.1f} %",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="gpu", choices=["cpu", "gpu"])
    ap.add_argument("--budget", type=float, default=60.0, help="training seconds of each measured run")
    ap.add_argument("--data", default=None, help="data spec, as for `overnight init --data`")
    args = ap.parse_args()
    gpus = detect_gpus()
    if args.preset == "gpu" and not gpus:
        raise SystemExit(
            "error: --preset gpu needs a visible NVIDIA GPU (nvidia-smi -L lists none); on CPU use --preset cpu"
        )
    share = (gpus[0], gpus[0]) if gpus else None  # both slots on the first GPU, as --gpus 0,0
    task = make_task(args.preset, args.data)
    print(f"task {task} | preset {args.preset} | device: {'GPU ' + gpus[0] if gpus else 'CPU'}", flush=True)
    run_once(task, min(5.0, args.budget), seed=0)  # builds the cache (and warms compile caches)

    alone = plan_slots(1, share[:1] if share else None)[0]
    one = run_once(task, args.budget, seed=1, env=alone.env)
    show("1 slot", one)
    pair = plan_slots(2, share)
    with ThreadPoolExecutor(2) as pool:
        both = list(pool.map(lambda s: run_once(task, args.budget, seed=2 + int(s.name), env=s.env), pair))
    for s, r in zip(pair, both):
        show(f"2 slots, #{s.name}", r)
    total = sum(r["tokens_per_second"] for r in both)
    print(f"pinning: 1 slot {alone.env or 'none'}; 2 slots {[s.env for s in pair]}")
    print(
        f"=== slot share: 2 slots together {total:.0f} tokens/s = {total / one['tokens_per_second']:.2f} x "
        f"one slot alone ({one['tokens_per_second']:.0f}); val_bpb {one['val_bpb']:.4f} alone, "
        f"{', '.join(format(r['val_bpb'], '.4f') for r in both)} shared",
        flush=True,
    )


if __name__ == "__main__":
    main()
