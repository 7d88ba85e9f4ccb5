"""Planted budget cheats on the nanogpt cpu preset, through `overnight run` (issue 30).

A scripted model (a real HTTP server on loopback, testing/fake_llm.py) proposes the edits of
testing/cheats.py one after another: a second forward/backward and optimizer step on each
batch, a sleep as long as each step, and a count of half the tokens. The night runs the
preset's clock (steps) with the default noise judge, without screening (so each cheat trains
full-budget runs whose steps compare with the baseline's). Prints, per experiment, its status,
the steps of its runs, their ratio to the baseline's, and the reason; appends the same as one
JSON line to --out.

Usage: python bench/budget_cheats.py [--budget 10] [--baseline-seeds 4] [--out bench/results/budget-cheats.jsonl]
                                     [--clock steps] [--data SPEC]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from task_throughput import cpu_line  # noqa: E402

from overnight import gitops  # noqa: E402
from overnight.cli import main as cli_main  # noqa: E402
from overnight.tasks import write_task  # noqa: E402
from overnight.testing import cheats  # noqa: E402
from overnight.testing.fake_llm import FakeLLM  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=10.0, help="training seconds per run")
    ap.add_argument("--baseline-seeds", type=int, default=4)
    ap.add_argument("--clock", default=None, help="override the preset's clock in overnight.toml")
    ap.add_argument("--data", default=None, help="data spec, as for `overnight init --data`")
    ap.add_argument("--out", type=Path, default=None, help="append the result as one JSON line")
    args = ap.parse_args()
    print(f"cpu: {cpu_line()}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    fake = FakeLLM()
    t0 = time.time()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-cheats-") as tmp:
            root = Path(tmp) / "task"
            root.mkdir()
            write_task("nanogpt", root, "cpu", args.data)
            if args.clock:
                spec = root / "overnight.toml"
                spec.write_text(spec.read_text().replace('clock    = "steps"', f'clock    = "{args.clock}"'))
            gitops.init_repo(root, "init")
            cheats.serve_cheats(fake)
            argv = ["run", str(root), "--tag", "cheats", "--experiments", "4", "--budget", f"{args.budget:g}"]
            argv += ["--no-screen", "--baseline-seeds", str(args.baseline_seeds), "--quiet"]
            argv += ["--proposer", "llm", "--model", "any", "--base-url", fake.openai_url]
            res = CliRunner().invoke(cli_main, argv, catch_exceptions=False)
            print(res.output[-3000:])
            found = cheats.summary(cheats.outcomes(root, "cheats"))
    finally:
        fake.close()
    print(f"\n{'experiment':<32}{'status':<11}{'steps':<24}{'x baseline':>11}  reason")
    for row in found:
        ratio = f"{row['ratio']:.2f}" if row["ratio"] is not None else "-"
        print(f"{row['cheat'][:30]:<32}{row['status']:<11}{str(row['steps']):<24}{ratio:>11}  {row['reason'][:90]}")
    print(f"\n{(time.time() - t0) / 60:.1f} min; load average at the end {os.getloadavg()[0]:.2f}")
    if args.out:
        with args.out.open("a") as f:
            f.write(
                json.dumps(
                    {
                        "budget": args.budget,
                        "clock": args.clock or "steps",
                        "cpu": cpu_line(),
                        "when": time.strftime("%Y-%m-%d %H:%M"),
                        "experiments": found,
                    }
                )
                + "\n"
            )


if __name__ == "__main__":
    main()
