"""The drift check: the incumbent is re-run every `remeasure_every` decided candidates, and a
re-run far from its earlier runs says the machine changed (a slower machine, a thermal
throttle), instead of silently biasing later keeps."""

from __future__ import annotations

import math
from dataclasses import replace

from overnight.judges.pooled import noise_of, ok_runs
from overnight.judges.stats import mean
from overnight.records import Experiment, ExpStatus, RunStatus


def remeasure_due(every: int, incumbent: Experiment, history: list[Experiment]) -> bool:
    """Whether `every` candidates were decided since the incumbent's last run (0: never)."""
    if every <= 0 or not incumbent.runs:
        return False
    last = max(r.started for r in incumbent.runs)
    decided_since = [
        e
        for e in history
        if e.id != incumbent.id and e.status.final and e.status != ExpStatus.REJECTED and (e.decided or 0) > last
    ]
    return len(decided_since) >= every


def drift_message(drift_z: float, incumbent: Experiment, history: list[Experiment]) -> str | None:
    """After a re-measure: is the newest run more than `drift_z` se from the incumbent's earlier ones?"""
    values, _ = ok_runs(incumbent)
    if len(values) < 2:
        return None
    # The yardstick leaves the run under test out: a jump would otherwise inflate its own
    # noise estimate and hide itself (one 4-se jump in a young night reads as ~2 se).
    newest = [r for r in incumbent.runs if r.status == RunStatus.OK and r.value is not None][-1]
    without = replace(incumbent, runs=[r for r in incumbent.runs if r is not newest])
    noise = noise_of([without if e.id == incumbent.id else e for e in history])
    if not noise.known:
        return None
    prev, last = values[:-1], values[-1]
    z = (last - mean(prev)) / (noise.sd * math.sqrt(1 + 1 / len(prev)))
    if abs(z) > drift_z:
        return (
            f"incumbent #{incumbent.id} re-measured at {last:.6g}, {z:+.1f} se from its earlier mean "
            f"{mean(prev):.6g}: the machine's speed or state may have changed"
        )
    return None
