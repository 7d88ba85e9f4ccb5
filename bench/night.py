"""The night benchmark: whole nights through the real CLI on the nanogpt cpu preset, each best
verified on fresh seeds: how much confirmed improvement a night buys per hour.

    python bench/night.py --work DIR [--minutes 30] [--budget 20] [--configs a,b] [--runs 5]
                          [--checks [--wall-runs 10] [--transfer 4]]   # each best in wall time, 4x budget
    python bench/night.py --summary          # the table and the picture from the results
    python bench/night.py --preset gpu ...   # on a GPU (bench/gpu_smoke.sh runs a short one)

Each configuration is a fresh `overnight init --task nanogpt --preset cpu` repository in
DIR/<name>, run by `overnight run --hours` for the same wall time, one after another (never
two at once: they would share the cores). Afterwards the best at every `--every` minutes of
the night is re-run on the fresh seeds `overnight verify` uses (1000, 1001, ...), paired by
seed with the baseline's runs on those seeds (measured once per budget: the baseline's files
are the same in every configuration), so each configuration gets a line of verified gain vs
hours; for a greedy night each kept change is also taken out of its best (`overnight ablate`'s
leave-one-out) to count the keeps that contribute nothing.

Results are JSON lines in --out (committed under bench/results/): a configuration already
there is not run again, so the benchmark spans sessions; a configuration cut off mid-night in
this session resumes its tag for the minutes it has left.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from task_throughput import cpu_line  # noqa: E402

from overnight import gitops  # noqa: E402
from overnight.errors import OvernightError  # noqa: E402
from overnight.journal import Journal  # noqa: E402
from overnight.layout import journal_path  # noqa: E402
from overnight.records import ExpStatus, incumbent  # noqa: E402
from overnight.task_load import load_task  # noqa: E402
from overnight.tasks import write_task  # noqa: E402
from overnight.verify import Measured, Remeasure, kept_chain, verify, without_change  # noqa: E402

TAG = "bench"
CONFIGS = {  # name -> (flags of `overnight run`, what it stands for); knob search and screen spelled
    # out where they matter (their defaults changed with this benchmark's figures: local search
    # until 2026-12-04, global since; screening off until 2026-12-05, on since)
    "optuna-noise": (
        ["--knob-search", "local", "--no-screen"],
        "optuna at the incumbent first (the default before these figures)",
    ),
    "random-noise": (["--proposer", "random", "--no-screen"], "the search baseline"),
    "optuna-greedy": (["--judge", "greedy", "--knob-search", "global"], "autoresearch's keep rule, optuna's default"),
    "optuna-noise-screen": (["--screen", "--knob-search", "local"], "screening (issue 16), optuna at the incumbent"),
    "tpe-noise": (["--knob-search", "global", "--no-screen"], "TPE from the first trial, no screening"),
    "tpe-noise-screen": (["--screen", "--knob-search", "global"], "TPE + screening: the default since these figures"),
}
OUT = Path(__file__).parent / "results" / "night.jsonl"


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def append(path: Path, row: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


def make_task(root: Path, preset: str, clock: str | None = None) -> None:
    if (root / "overnight.toml").exists():
        return
    root.mkdir(parents=True, exist_ok=True)
    write_task("nanogpt", root, preset, None)
    if clock:  # another clock than the preset's (e.g. the tokens clock, to compare)
        toml = root / "overnight.toml"
        toml.write_text(re.sub(r'(?m)^(clock\s*=\s*)"\w+"', rf'\g<1>"{clock}"', toml.read_text()))
    gitops.init_repo(root, f"nanogpt {preset} preset")


def night_span(journal: Journal) -> tuple[float, float]:
    """(start, end) of the tag: its creation to the last run's end or decision."""
    info = journal.tag_info(TAG)
    h = journal.experiments(TAG)
    ends = [r.ended for e in h for r in (*e.runs, *e.screens) if r.ended] + [e.decided for e in h if e.decided]
    return info["created"], max(ends, default=info["created"])


def run_night(root: Path, flags: list[str], minutes: float, budget: float, log: Path) -> float:
    """Run (or resume) the night for what is left of `minutes`; returns the night's minutes."""
    left = minutes
    if journal_path(root).exists():
        j = Journal(journal_path(root))
        if j.tag_info(TAG):
            start, end = night_span(j)
            left = minutes - (end - start) / 60
        j.close()
    if left > 0.5:
        hours = f"{left / 60:.4f}"
        cmd = [
            sys.executable,
            "-m",
            "overnight",
            "run",
            str(root),
            "--tag",
            TAG,
            "--hours",
            hours,
            "--budget",
            f"{budget:g}",
        ]
        with log.open("a") as f:
            f.write(f"\n$ {' '.join(cmd + flags + ['--quiet'])}\n")
            f.flush()
            subprocess.run([*cmd, *flags, "--quiet"], stdout=f, stderr=subprocess.STDOUT, check=True)
    j = Journal(journal_path(root))
    start, end = night_span(j)
    j.close()
    return (end - start) / 60


def baseline_fresh(out: Path, root: Path, budget: float, runs: int) -> Measured:
    """The baseline on the fresh seeds, once per budget and clock (its files are the same in
    every configuration; under the steps clock each night measured its own cost, so each gets
    its own)."""
    rm = remeasure(root, runs)
    clock = rm.task.clock
    steps = clock == "steps"
    for row in rows(out):
        same = row.get("clock", "tokens") == clock and (not steps or row.get("root") == str(root))
        if row.get("kind") == "baseline-fresh" and row["budget"] == budget and same and len(row["values"]) >= runs:
            return Measured(row["values"][:runs], row.get("walls", [float("nan")] * runs)[:runs])
    (base,) = rm.measure([("baseline", rm.journal.experiments(TAG)[0].commit_sha, None)])
    append(
        out,
        {
            "kind": "baseline-fresh",
            "budget": budget,
            "clock": clock,
            "root": str(root),
            "values": base.values,
            "walls": base.walls,
            "cpu": cpu_line(),
        },
    )
    return base


def remeasure(root: Path, runs: int, clock: str | None = None, budget: float | None = None) -> Remeasure:
    """As `overnight verify` does: the commits re-run under the budget the night ran under
    (or `clock`, `budget`)."""
    journal = Journal(journal_path(root))
    task = load_task(root).with_budget(journal.tag_info(TAG)["config"]["budget"])
    return Remeasure(root, task, journal, TAG, runs, clock=clock, budget=budget)


def verified_line(root: Path, base: Measured, every: float, minutes: float, runs: int) -> list[dict]:
    """The best at each checkpoint of the night, verified on the fresh seeds (each distinct best once)."""
    rm = remeasure(root, runs)
    h = rm.journal.experiments(TAG)
    start, _ = night_span(rm.journal)
    marks = [m for m in frange(every, minutes, every)] + [minutes]
    measured: dict[int, Measured] = {}
    line = []
    for m in marks:
        best = incumbent([e for e in h if e.decided is not None and e.decided <= start + m * 60]) or h[0]
        point = {"minutes": round(m, 2), "best": best.id, "description": best.description[:120]}
        if best.id != h[0].id:
            if best.id not in measured:
                (measured[best.id],) = rm.measure([(f"best-{best.id}", best.commit_sha, h[0].commit_sha)])
            c = rm.compare(f"#{best.id}", measured[best.id], base)
            point.update(gain=c.gain, low=c.low, high=c.high, values=c.values, walls=measured[best.id].walls)
        else:
            point.update(gain=0.0, low=0.0, high=0.0)
        line.append(point)
    return line


def frange(step: float, stop: float, by: float) -> list[float]:
    out, x = [], step
    while x < stop - 1.0:  # a mark within a minute of the end is the end's
        out.append(x)
        x += by
    return out


def ablation(root: Path, best_values: Measured, runs: int) -> list[dict]:
    """Leave-one-out of each kept change of the final best (verify.ablate, reusing the best's runs)."""
    rm = remeasure(root, runs)
    h = rm.journal.experiments(TAG)
    best = incumbent(h)
    by_id = {e.id: e for e in h}
    out = []
    for change in kept_chain(h, best):
        sha, note = without_change(rm, best, change, by_id[change.parent_id])
        if sha is None:
            out.append({"change": change.id, "note": note})
            continue
        (variant,) = rm.measure([(f"without-{change.id}", sha, best.commit_sha)])
        c = rm.compare(f"#{change.id}", variant, best_values, note, better="reference")
        out.append({"change": change.id, "gain": c.gain, "low": c.low, "high": c.high, "note": note})
    return out


def counts(root: Path) -> dict:
    j = Journal(journal_path(root))
    h = j.experiments(TAG)
    j.close()
    cands = h[1:]
    by = lambda s: sum(e.status == s for e in cands)  # noqa: E731
    return {
        "experiments": len(h),
        "judged": by(ExpStatus.KEPT) + by(ExpStatus.DISCARDED) + by(ExpStatus.SCREENED),
        "kept": by(ExpStatus.KEPT),
        "screened": by(ExpStatus.SCREENED),
        "duplicates": by(ExpStatus.DUPLICATE),
        "failed": sum(e.status.failed for e in cands),
        "undecided": sum(not e.status.final for e in cands),
        "runs": sum(len(e.runs) for e in h),
        "screen_runs": sum(len(e.screens) for e in h),
        "baseline_value": h[0].value,
    }


def run_config(name: str, a: argparse.Namespace) -> None:
    flags, _ = CONFIGS[name]
    root = a.work / name
    make_task(root, a.preset, a.clock)
    load_before = os.getloadavg()
    minutes = run_night(root, flags, a.minutes, a.budget, a.work / f"{name}.log")
    base = baseline_fresh(a.out, root, a.budget, a.runs)
    line = verified_line(root, base, a.every, minutes, a.runs)
    row = {
        "kind": "night",
        "config": name,
        "flags": flags,
        "budget": a.budget,
        "preset": a.preset,
        "minutes": round(minutes, 2),
        "target_minutes": a.minutes,
        **counts(root),
        "verified": line[-1],
        "gain_per_hour": line[-1]["gain"] / (minutes / 60),
        "line": line,
        "cpu": cpu_line(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "commit": gitops.head(Path(__file__).parent.parent)[:7],
        "date": time.strftime("%Y-%m-%d"),
        "clock": load_task(root).clock,
    }
    if "--judge" in flags and "greedy" in flags and line[-1].get("values"):
        row["ablation"] = ablation(root, Measured(line[-1]["values"], line[-1]["walls"]), a.runs)
    append(a.out, row)
    print(summary_row(row), flush=True)


def run_checks(name: str, a: argparse.Namespace) -> None:
    """The night's final best in the user's currency (issue 30): `overnight verify` under the
    wall clock (--wall-runs fresh seeds) and at --transfer times the budget under the night's
    clock (--runs): each a "check" row, resumable."""
    root = a.work / name
    done = {
        (r["clock"], r["budget"])
        for r in rows(a.out)
        if r.get("kind") == "check" and r["config"] == name and r.get("root", str(root)) == str(root)
    }
    for clock, budget, runs in (("wall", a.budget, a.wall_runs), (None, a.transfer * a.budget, a.runs)):
        rm = remeasure(root, runs, clock=clock, budget=budget)
        if (rm.task.clock, rm.task.budget) in done:
            rm.journal.close()
            continue
        load_before = os.getloadavg()
        try:
            base, c = verify(rm)
        except OvernightError as exc:  # nothing kept: nothing to check
            print(f"{name}: {exc}", flush=True)
            return
        row = {
            "kind": "check",
            "config": name,
            "root": str(root),
            "night_clock": load_task(root).clock,
            **rm.conditions(),
            "best": c.label,
            "gain": c.gain,
            "low": c.low,
            "high": c.high,
            "values": c.values,
            "baseline": base,
            "wall": c.wall,
            "ref_wall": c.ref_wall,
            "load_before": load_before,
            "load_after": os.getloadavg(),
            "cpu": cpu_line(),
            "commit": gitops.head(Path(__file__).parent.parent)[:7],
            "date": time.strftime("%Y-%m-%d"),
        }
        append(a.out, row)
        rm.journal.close()
        print(check_row(row), flush=True)


def check_row(r: dict) -> str:
    return (
        f"{r['config']:<20} verify {r['best']} ({r['clock']} clock, {r['budget']:g} s, {r['runs']} seeds): "
        f"gain {r['gain']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}]; median wall per run best {r['wall']:.1f} s, "
        f"baseline {r['ref_wall']:.1f} s"
    )


def summary_row(r: dict) -> str:
    v = r["verified"]
    zero = ""
    if "ablation" in r:
        zero = "; " + ablation_words(r["ablation"])
    return (
        f"{r['config']:<20} {r['minutes']:5.1f} min  {r['experiments']:3d} exp  {r['judged']:3d} judged  "
        f"{r['kept']:2d} kept  {r['screened']:2d} screened  {r['duplicates']:2d} dup  "
        f"verified gain {v['gain']:+.4f} [{v['low']:+.4f}, {v['high']:+.4f}]  "
        f"{r['gain_per_hour']:+.4f}/h{zero}"
    )


def ablation_words(parts: list[dict]) -> str:
    """How many keeps contribute nothing to the best, and why: a superseded keep (later keeps
    replaced all it changed) adds nothing, a harmful one (CI below 0) takes away, and one whose
    CI includes 0 cannot be told from nothing."""
    superseded = sum(1 for x in parts if "low" not in x)
    harmful = sum(1 for x in parts if "high" in x and x["high"] < 0)
    unclear = sum(1 for x in parts if "low" in x and x["low"] <= 0 <= x["high"])
    nothing = superseded + harmful + unclear
    return (
        f"{nothing} of {len(parts)} keeps contribute nothing "
        f"({superseded} superseded, {harmful} harmful, {unclear} not distinguishable from 0)"
    )


def markdown(nights: list[dict]) -> None:
    """The table docs/figures.md holds, from the rows."""
    print(
        "| configuration | flags | minutes | experiments | judged | kept | screened | duplicates (runs saved) "
        "| verified gain, val_bpb (95 % CI) | per hour | the best |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in nights:
        v = r["verified"]
        # The flags spelled out (CONFIGS): rows made before the knob search was spelled out ran with
        # the default of their commit, the same search (`optuna-noise`: local, until 264759f).
        flags = " ".join(CONFIGS[r["config"]][0] if r["config"] in CONFIGS else r["flags"])
        print(
            f"| {r['config']} | `{flags}` | {r['minutes']:.1f} | {r['experiments']} | {r['judged']} | {r['kept']} "
            f"| {r['screened']} | {r['duplicates']} | {v['gain']:+.4f} ({v['low']:+.4f} … {v['high']:+.4f}) "
            f"| {r['gain_per_hour']:+.3f} | #{v['best']}: {v['description'][:90]} |"
        )


def summary(out: Path, as_markdown: bool = False) -> None:
    nights = [r for r in rows(out) if r.get("kind") == "night"]
    if not nights:
        print(f"no nights in {out} yet")
        return
    print(f"cpu: {nights[0]['cpu']}")
    for r in nights:
        print(
            summary_row(r) + f"  ({r.get('clock', 'tokens')} clock, load {r['load_before'][0]:.1f}, "
            f"{r['date']}, {r['commit']})"
        )
    for r in rows(out):
        if r.get("kind") == "check":
            print(check_row(r) + f"  (load {r['load_before'][0]:.1f}, {r['date']}, {r['commit']})")
    if as_markdown:
        markdown(nights)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in nights:
        r["line"] = [
            p
            for i, p in enumerate(r["line"])
            if i == len(r["line"]) - 1 or r["line"][-1]["minutes"] - p["minutes"] >= 1
        ]
        xs = [0.0] + [p["minutes"] / 60 for p in r["line"]]
        ys = [0.0] + [p["gain"] for p in r["line"]]
        lo = [0.0] + [p["gain"] - p["low"] for p in r["line"]]
        hi = [0.0] + [p["high"] - p["gain"] for p in r["line"]]
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=r["config"])
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("hours of the night")
    ax.set_ylabel("verified gain, val_bpb (fresh seeds, 95 % CI)")
    ax.set_title(f"nanogpt {nights[0].get('preset', 'cpu')} preset, {nights[0]['budget']:g} s runs")
    ax.legend(fontsize=8)
    fig.tight_layout()
    png = out.with_suffix(".png")
    fig.savefig(png, dpi=110)
    print(f"picture: {png}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, help="where the nights' repositories go (outside this checkout)")
    ap.add_argument("--out", type=Path, default=OUT, help="JSON lines; configurations there are skipped")
    ap.add_argument("--minutes", type=float, default=30.0, help="wall minutes of each night")
    ap.add_argument("--budget", type=float, default=20.0, help="seconds per run (every configuration)")
    ap.add_argument("--configs", default=",".join(CONFIGS), help="which, in order")
    ap.add_argument("--runs", type=int, default=5, help="fresh seeds per verified commit")
    ap.add_argument("--every", type=float, default=10.0, help="minutes between verified checkpoints")
    ap.add_argument("--preset", default="cpu", choices=("cpu", "gpu"), help="nanogpt's preset (gpu: see gpu_smoke.sh)")
    ap.add_argument("--clock", default=None, help="the nights' [task] clock (default: the preset's)")
    ap.add_argument(
        "--checks",
        action="store_true",
        help="also verify each night's best under the wall clock and at --transfer x the budget (issue 30)",
    )
    ap.add_argument("--wall-runs", type=int, default=10, help="--checks: fresh seeds under the wall clock")
    ap.add_argument("--transfer", type=float, default=4.0, help="--checks: the longer budget, times --budget")
    ap.add_argument("--summary", action="store_true", help="print the table, draw the picture, stop")
    ap.add_argument("--markdown", action="store_true", help="with --summary: the table as markdown too")
    a = ap.parse_args()
    if a.summary:
        summary(a.out, a.markdown)
        return
    if a.work is None:
        ap.error("--work DIR is needed to run nights")
    a.work.mkdir(parents=True, exist_ok=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    print(f"cpu: {cpu_line()}; load {os.getloadavg()}", flush=True)
    nights = [r for r in rows(a.out) if r.get("kind") == "night"]
    # Rows from before the steps clock (2026-12-07) were measured under the tokens clock.
    done = {(r["config"], r["budget"], r.get("clock", "tokens")) for r in nights if r["target_minutes"] >= a.minutes}
    clock = a.clock or load_task_clock(a.preset)
    for name in a.configs.split(","):
        if (name, a.budget, clock) in done:
            print(f"{name}: already measured under the {clock} clock (in {a.out})", flush=True)
        else:
            run_config(name, a)
        if a.checks:
            run_checks(name, a)
    summary(a.out)


def load_task_clock(preset: str) -> str:
    """The clock a fresh repository of the preset counts its budget with."""
    from overnight.tasks.nanogpt import PRESETS

    return PRESETS[preset]["clock"]


if __name__ == "__main__":
    main()
