"""The held-out slice on the nanogpt CPU preset: how far val_bpb and heldout_val_bpb differ for
honest runs, and for a candidate that trains on the validation tokens. Slow, run once.

    python bench/heldout.py [--seeds 3] [--budget 60] [--honest EMBEDDING_LR=0.3] [--no-fitter]

A fresh `nanogpt --preset cpu` task (embedded data). Three configurations, each on the same
seeds, through the real runner (process, re-score, held-out score): the baseline; an honest
change (EMBEDDING_LR halved); and a val-fitter (trains on windows of the first EVAL_TOKENS of
the validation split, exactly the tokens evaluate_bpb scores). For each pair (config vs
baseline, seed for seed and in means) it prints the statistic the keep rule uses:
gap = (val_bpb gain) - (heldout gain); `[heldout] max_gap` must sit above the honest gaps and
below the val-fitter's.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from overnight import gitops
from overnight.records import RunRequest
from overnight.run import heldout_store
from overnight.run.environ import protected_hashes
from overnight.run.execute import execute
from overnight.task_load import load_task
from overnight.tasks import write_task
from overnight.testing.val_fitter import val_fitter  # the attack, shared with the slow adversarial test


def configs(train: str, honest: str = "EMBEDDING_LR=0.3", with_fitter: bool = True) -> dict[str, str]:
    from overnight import knobs

    fitter = val_fitter(train)
    name, _, value = honest.partition("=")
    out = {"baseline": train, f"honest ({name} {value})": knobs.rewrite(train, {name: eval(value)})}
    return out | ({"val-fitter": fitter} if with_fitter else {})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget", type=float, default=60)
    ap.add_argument("--honest", default="EMBEDDING_LR=0.3", help="the honest change, NAME=VALUE of train.py")
    ap.add_argument("--no-fitter", action="store_true")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="overnight-heldout-bench-"))
    write_task("nanogpt", root, "cpu", None)
    gitops.init_repo(root, "nanogpt cpu")
    task = load_task(root).with_budget(args.budget)
    base = gitops.head(root)
    hashes = protected_hashes(task, base)
    t0 = time.time()
    heldout_store.ensure(task, base, hashes)
    print(f"held-out slice ready in {time.time() - t0:.0f} s")
    rows: dict[str, list[tuple[float, float]]] = {}
    for name, text in configs((root / "train.py").read_text(), args.honest, not args.no_fitter).items():
        commit = gitops.make_commit(root, base, {"train.py": text}, name) if name != "baseline" else base
        for seed in range(1, args.seeds + 1):
            run = root / ".overnight" / "bench" / f"{name.split()[0]}-{seed}"
            res = execute(
                task,
                RunRequest(
                    commit=commit,
                    seed=seed,
                    run_dir=run,
                    worktree=root / ".overnight" / "wt" / run.name,
                    protected_hashes=hashes,
                ),
            )
            held = res.summary.get("heldout_val_bpb")
            print(
                f"{name:<26} seed {seed}: {res.status.value:<8} val_bpb {res.value} heldout {held} "
                f"(val - heldout {res.value - held:+.4f})"
                if held is not None and res.value is not None
                else f"{name:<26} seed {seed}: {res.status.value} {res.error[:300]}",
                flush=True,
            )
            if held is not None and res.value is not None:
                rows.setdefault(name, []).append((res.value, held))
    base_rows = rows.get("baseline", [])
    offsets = [v - h for v, h in base_rows]
    if len(offsets) > 1:
        print(
            f"\nbaseline val - heldout: mean {statistics.mean(offsets):+.4f}, sd {statistics.stdev(offsets):.4f} "
            f"over {len(offsets)} seeds"
        )
    pair_gaps = [(a[0] - b[0]) - (a[1] - b[1]) for i, a in enumerate(base_rows) for b in base_rows[i + 1 :]]
    if pair_gaps:
        print(f"baseline seed vs seed, gap = val gain - heldout gain: max |gap| {max(map(abs, pair_gaps)):.4f}")
    for name, rs in rows.items():
        if name == "baseline" or not base_rows:
            continue
        per_seed = [(b[0] - r[0]) - (b[1] - r[1]) for r, b in zip(rs, base_rows)]
        mv = statistics.mean(b[0] for b in base_rows) - statistics.mean(r[0] for r in rs)
        mh = statistics.mean(b[1] for b in base_rows) - statistics.mean(r[1] for r in rs)
        print(
            f"{name}: val gain {mv:+.4f}, heldout gain {mh:+.4f}, gap {mv - mh:+.4f} (means); per seed "
            + ", ".join(f"{g:+.4f}" for g in per_seed)
        )
    print(f"\n{args.budget:g} s budget, {args.seeds} seeds, {(time.time() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
