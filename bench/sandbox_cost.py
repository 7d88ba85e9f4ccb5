"""What the default sandbox costs a run: the same run through the harness's runner
(run/execute.py: worktree, guard, process, re-score), in the sandbox (limits.sandbox = "auto")
and without it (OVERNIGHT_SANDBOX=off), interleaved pair by pair so a drift of the machine
spreads over both alike.

Two tasks: the toy (a sub-second run: the sandbox's fixed cost shows alone) and the nanogpt cpu
preset as `overnight init` writes it, at --budget seconds (the cost as a share of a real run).
Prints each side's median wall seconds per run and their ratio; --out appends one JSON line
per run (resumable: runs already there are skipped).

Usage: python bench/sandbox_cost.py [--toy-pairs 20] [--nanogpt-pairs 3] [--budget 10] [--out F]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from task_throughput import cpu_line, make_task, setup  # noqa: E402

from overnight import gitops  # noqa: E402
from overnight.records import RunRequest, RunStatus  # noqa: E402
from overnight.run import sandbox  # noqa: E402
from overnight.run.environ import protected_hashes
from overnight.run.execute import execute  # noqa: E402
from overnight.task_load import load_task  # noqa: E402
from overnight.testing.toy import make_toy  # noqa: E402

SIDES = ("sandbox", "none")


def one_run(root: Path, side: str, index: int, budget: float | None) -> dict:
    """One seeded run of HEAD through execute(), sandboxed or not; its wall time and status."""
    os.environ["OVERNIGHT_SANDBOX"] = "off" if side == "none" else ""
    task = load_task(root)
    if budget is not None:
        task = task.with_budget(budget)
    commit = gitops.head(root)
    work = root / ".overnight" / "bench"
    req = RunRequest(
        commit=commit,
        seed=index,
        run_dir=work / f"{side}-{index}",
        worktree=work / f"wt-{side}-{index}",
        protected_hashes=protected_hashes(task, commit),
    )
    t0 = time.perf_counter()
    res = execute(task, req)
    wall = time.perf_counter() - t0
    if res.status != RunStatus.OK:
        raise SystemExit(
            f"{side} run {index} of {root}: {res.status.value}: {res.error}\n{Path(res.log_path).read_text()[-2000:]}"
        )
    return {
        "side": side,
        "index": index,
        "wall": wall,
        "value": res.value,
        "sandbox": res.summary.get("sandbox", ""),
        "load": os.getloadavg()[0],
    }


def measure(name: str, root: Path, pairs: int, budget: float | None, out: Path | None, done: set) -> None:
    walls = {s: [] for s in SIDES}
    for i in range(pairs):
        for side in SIDES if i % 2 == 0 else SIDES[::-1]:
            if (name, side, i) in done:
                continue
            row = {"task": name, **one_run(root, side, i, budget)}
            walls[side].append(row["wall"])
            if out:
                with out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
    if all(walls.values()):
        med = {s: statistics.median(w) for s, w in walls.items()}
        print(
            f"{name}: median wall per run, sandbox {med['sandbox']:.3f} s, none {med['none']:.3f} s, "
            f"ratio {med['sandbox'] / med['none']:.3f} ({pairs} pairs)",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--toy-pairs", type=int, default=20)
    ap.add_argument("--nanogpt-pairs", type=int, default=3)
    ap.add_argument("--budget", type=float, default=10.0)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    if sandbox.unavailable():
        raise SystemExit(f"no sandbox works here: {sandbox.unavailable()}")
    done = set()
    if a.out and a.out.exists():
        done = {(r["task"], r["side"], r["index"]) for r in map(json.loads, a.out.read_text().splitlines())}
    print(cpu_line(), f"| sandbox tool: {sandbox.tool()} | load {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="sandbox-cost-") as tmp:
        os.environ.setdefault("OVERNIGHT_CACHE", str(Path(tmp) / "cache"))
        toy = make_toy()
        measure("toy", toy, a.toy_pairs, None, a.out, done)
        if a.nanogpt_pairs:
            nano = make_task("cpu", None, Path(tmp) / "nanogpt")
            gitops.init_repo(nano, "the cpu preset")
            print(f"nanogpt setup {setup(nano, {}):.1f} s", flush=True)
            measure("nanogpt", nano, a.nanogpt_pairs, a.budget, a.out, done)


if __name__ == "__main__":
    main()
