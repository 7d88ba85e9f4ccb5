"""Where a night's time went: per run, the charged budget against the wall, by phase.

    python bench/run_phases.py ROOT [--tag TAG]         # any night's journal (e.g. the quick start's)

For every ok run of the night (ROOT's journal, the latest tag unless --tag): its wall time as
the harness saw it (journaled start to end: worktree, process, collection), the process's own
wall, and the budget it was charged (training_seconds). The fixed cost of a run is wall minus
charged. Where the task writes its phases (nanogpt's prepare.phases: start, build, first_steps,
training, evaluation, checkpoint, other) they are shown too, with what the process took beyond
them (spawn and exit) and what the harness took beyond the process. Medians, separately for
full runs and screen runs (a fraction of the budget). Then the night: wall from its start (the
tag's creation: the task's setup is in it) to its last run's end, charged training as a share
of it, the candidates decided and their rate per hour,
and how long the baseline took before the first candidate's run.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from overnight.journal import Journal
from overnight.layout import journal_path
from overnight.records import ExpStatus, RunStatus

PHASES = ("start", "build", "first_steps", "training", "evaluation", "checkpoint", "other")


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:6.2f}"


def summarise(runs, label: str) -> dict:
    rows = []
    for r in runs:
        wall = (r.ended or r.started) - r.started
        charged = r.training_seconds or 0.0
        row = {"wall": wall, "process": r.wall_seconds or 0.0, "charged": charged, "fixed": wall - charged}
        phases = r.summary.get("phases") or {}
        for p in PHASES:
            if p in phases:
                row[p] = phases[p]
        if phases:
            row["spawn+exit"] = row["process"] - sum(phases.values())
        row["harness"] = wall - row["process"]
        rows.append(row)
    keys = ["wall", "charged", "fixed", "process", "harness", *PHASES, "spawn+exit"]
    med = {k: median([row[k] for row in rows if k in row]) for k in keys}
    print(f"{label}: {len(rows)} runs, medians in seconds")
    print("  " + " ".join(f"{k:>11}" for k in keys))
    print("  " + " ".join(f"{fmt(med[k]):>11}" for k in keys))
    return med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--tag")
    args = ap.parse_args()
    journal = Journal(journal_path(args.root))
    tag = args.tag or journal.tags()[-1]
    history = journal.experiments(tag)
    runs = [r for e in history for r in e.runs + e.screens if r.status == RunStatus.OK and r.ended]
    full = [r for r in runs if not r.screen]
    screen = [r for r in runs if r.screen]
    print(f"night {tag} of {args.root}: {len(history)} experiments, {len(runs)} ok runs")
    summarise(full, "full runs")
    if screen:
        summarise(screen, "screen runs")
    everything = [r for e in history for r in e.runs + e.screens if r.ended]
    first_run, end = min(r.started for r in everything), max(r.ended for r in everything)
    start = (journal.tag_info(tag) or {}).get("created") or first_run  # the night began at its tag: setup is in it
    kept = sum(e.status == ExpStatus.KEPT for e in history[1:])
    charged = sum(r.training_seconds or 0.0 for r in everything)
    decided = [
        e
        for e in history[1:]
        if e.status in (ExpStatus.KEPT, ExpStatus.DISCARDED, ExpStatus.SCREENED)
        or (e.status.failed and e.status != ExpStatus.REJECTED)
    ]  # decided by runs: a duplicate (answered from the journal) or a rejected edit (never run) is not
    first_candidate = min((r.started for e in history[1:] for r in e.runs + e.screens), default=end)
    base_runs = sum(1 for r in history[0].runs if r.started < first_candidate)
    print(
        f"night: {end - start:.0f} s from its start (setup included; the first run at {first_run - start:.0f} s) "
        f"to its last run's end; charged training {charged:.0f} s ({100 * charged / (end - start):.1f} %); "
        f"{len(decided)} candidates decided ({3600 * len(decided) / (end - start):.1f} per hour; kept {kept}); "
        f"the baseline ran {base_runs} run(s), {first_candidate - first_run:.0f} s, before the first candidate's"
    )


if __name__ == "__main__":
    main()
