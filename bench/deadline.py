"""How far past `--hours` a night ends: the overrun, on the toy task and on nanogpt.

Writes a fresh task (as `overnight init` would), runs `overnight run DIR --hours H` in a
subprocess, and prints the wall time from launch to exit, the overrun past H (the promise:
at most one run's timeout), what the night did, and the machine's load. The data and compile
caches are $OVERNIGHT_CACHE as for real runs; the task's setup is inside H (the night's clock
starts with the command).

Usage: python bench/deadline.py [--task toy|nanogpt] [--hours 0.1] [--budget S] [--judge noise]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from overnight import gitops
from overnight.night.tags import open_journal
from overnight.task_load import load_task
from overnight.tasks import write_task
from overnight.testing.procs import CLI


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="toy", choices=["toy", "nanogpt"])
    ap.add_argument("--hours", type=float, default=0.1)
    ap.add_argument("--budget", type=float, default=None, help="seconds per run (default: the task's)")
    ap.add_argument("--judge", default="noise")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix=f"deadline-{args.task}-")) / "task"
    root.mkdir()
    write_task(args.task, root)
    gitops.init_repo(root, "init")
    task = load_task(root).with_budget(args.budget)
    cmd = [
        *CLI,
        "run",
        str(root),
        "--tag",
        "bench",
        "--quiet",
        "--hours",
        f"{args.hours:g}",
        "--judge",
        args.judge,
    ]
    if args.budget:
        cmd += ["--budget", f"{args.budget:g}"]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"overnight run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    j = open_journal(root)
    history = j.experiments("bench")
    j.close()
    deadline = args.hours * 3600
    undecided = [e.id for e in history if not e.status.final]
    runs = sum(len(e.runs) for e in history)
    print(
        f"task {args.task} | budget {task.budget:g} s, timeout {task.timeout:g} s | --hours {args.hours:g} "
        f"({deadline:.0f} s) | judge {args.judge}"
    )
    print(
        f"wall: {wall:.1f} s | overrun past the deadline: {wall - deadline:+.1f} s "
        f"(promise: at most one run's timeout, {task.timeout:g} s)"
    )
    print(
        f"experiments {len(history)} ({runs} runs), decided {len(history) - len(undecided)}, "
        f"undecided {undecided or 'none'}"
    )
    print(f"load_average: {os.getloadavg()[0]:.2f} (1-minute, at the end)")
    print("last lines of the night:\n  " + "\n  ".join(proc.stdout.strip().splitlines()[-3:]))


if __name__ == "__main__":
    main()
