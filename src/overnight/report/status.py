"""What the night looks like right now, computed from the journal alone.

`status_dict` is the `overnight status --json` object (fixed contract: metric, goal,
experiments, kept, crashed, baseline {id, value}, best {id, value, commit}; more keys may be
added, none renamed). The rich view and the report are drawn from the same numbers.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import fields

from overnight.journal import Journal
from overnight.judges.noise import NoiseJudge, NoiseSettings, noise_of
from overnight.judges.paired import Design
from overnight.judges.pooled import paired_noise_of
from overnight.judges.power import detectable_gain
from overnight.night import screen
from overnight.records import EventKind, Experiment, ExpStatus, RunStatus, incumbent
from overnight.report.usage import usage_summary
from overnight.task import Metric


def running_best(history: list[Experiment], metric: Metric) -> list[tuple[int, float]]:
    """(experiment id, best kept value so far) at each kept experiment, in decision order."""
    kept = sorted(
        (e for e in history if e.status == ExpStatus.KEPT and e.value is not None), key=lambda e: (e.decided or 0, e.id)
    )
    return [(e.id, e.value) for e in kept]


def slot_status(
    journal: Journal, tag: str, history: list[Experiment], budget: float | None, now: float | None = None
) -> tuple[list[dict], float | None]:
    """Every slot of the latest controller (where, which experiment, progress) and its duty
    cycle: training seconds / wall seconds since that controller started, where a run still
    going counts its elapsed time and a finished one its training_seconds (its wall time when
    the task reports none). A slot holding a re-score (night/rescorer.py) is busy but trains
    nothing: that time counts as not training. Returns (slots, mean duty cycle over the slots)."""
    started = journal.events(tag, EventKind.SLOTS)
    if not started:
        return [], None
    since = started[-1]["time"]
    layout = json.loads(started[-1]["message"])
    now = now or time.time()
    runs = [(r, e) for e in history for r in (*e.runs, *e.screens) if r.started >= since]
    live = any(r.status == RunStatus.RUNNING for r, _ in runs)
    end = now if live else max((r.ended for r, _ in runs if r.ended), default=since)
    wall = max(end - since, 1e-9)
    rows = []
    for slot in layout["slots"]:
        mine = [(r, e) for r, e in runs if r.slot == slot["slot"]]
        current = next(((r, e) for r, e in mine if r.status == RunStatus.RUNNING), None)
        busy = sum(
            (now - r.started) if r.status == RunStatus.RUNNING else (r.training_seconds or r.wall_seconds or 0.0)
            for r, _ in mine
        )
        row = {
            **slot,
            "executor": layout.get("executor"),
            "state": "running" if current else "idle",
            "experiment": None,
            "description": None,
            "run": None,
            "elapsed": None,
            "progress": None,
            "runs": len(mine),
            "duty_cycle": min(1.0, busy / wall) if runs else None,
        }
        if current:
            r, e = current
            elapsed = now - r.started
            row.update(
                node=r.node or slot["node"],
                experiment=e.id,
                description=e.description,
                run=r.id,
                elapsed=elapsed,
                progress=min(1.0, elapsed / budget) if budget else None,
            )
        rows.append(row)
    duties = [row["duty_cycle"] for row in rows if row["duty_cycle"] is not None]
    return rows, (sum(duties) / len(duties) if duties else None)


def _baseline_value(baseline: Experiment | None) -> float | None:
    if baseline is None:
        return None
    if baseline.value is not None:
        return baseline.value
    values = baseline.ok_values
    return sum(values) / len(values) if values else None


def fmt_value(v) -> str:
    """A metric value for people: six decimals, "-" when there is none (or it is not finite)."""
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.6f}"


def headline(d: dict) -> tuple[str, str]:
    """(baseline, best) of a status dict, in words for the status view and the report: never a
    `None`; a baseline still measuring says how far it got, a night without a keep says so."""
    b = d["baseline"]
    if b["id"] is None:
        base = "not started"
    elif b["value"] is None:
        base = f"not measured yet (#{b['id']})"
    else:
        more = f", {b['runs']} run(s) so far, still measuring" if b.get("measuring") else ""
        base = f"{fmt_value(b['value'])} (#{b['id']}{more})"
    best = d["best"]
    if best["id"] is None or best["id"] == b["id"]:
        kept = "none kept yet" if d["kept"] == 0 else "-"
        best_text = kept if best["id"] is None else f"the baseline ({kept})"
    else:
        best_text = f"{fmt_value(best['value'])} (#{best['id']}, commit {(best['commit'] or '')[:7]})"
    return base, best_text


def _detectable(history: list, info: dict) -> tuple[float | None, Design | None]:
    """The noise judge's smallest confirmable gain and design, with the night's settings."""
    config = info.get("config") or {}
    if config.get("judge", "noise") != "noise":
        return None, None
    known = {f.name for f in fields(NoiseSettings)}
    settings = NoiseSettings(**{k: v for k, v in (config.get("noise") or {}).items() if k in known})
    return detectable_gain(NoiseJudge(settings), history)


def _noise(history: list[Experiment], design: Design | None) -> dict:
    """The night's noise as `status --json` shows it (judges/pooled.py)."""
    noise, paired = noise_of(history), paired_noise_of(history)
    return {
        "sd": noise.sd if noise.known else None,
        "df": noise.df,
        "paired_sd": paired.sd if paired.df else None,  # of a difference of two runs under one seed
        "paired_df": paired.df,
        # how the noise judge compares the next candidate (judges/paired.py), and why
        "design": None if design is None else ("paired" if design.paired else "unpaired"),
        "design_why": None if design is None else design.why,
    }


def status_dict(journal: Journal, tag: str, metric: Metric) -> dict:
    history = journal.experiments(tag)
    info = journal.tag_info(tag) or {}
    baseline = next((e for e in history if e.parent_id is None), None)
    best = incumbent(history)
    finished = [e for e in history if e.status.final]
    runs = [r for e in history for r in e.runs]
    started = info.get("created", time.time())
    last = max((e.decided or e.updated for e in history), default=started)
    hours = max(last - started, 1e-9) / 3600
    running = [e for e in history if e.status == ExpStatus.RUNNING]
    kept = sum(e.status == ExpStatus.KEPT for e in history if e.parent_id is not None)
    detectable, design = _detectable(history, info)
    gain = None
    if baseline is not None and best is not None and baseline.value is not None and best.value is not None:
        gain = metric.improvement(best.value, baseline.value)
    slots, duty = slot_status(journal, tag, history, (info.get("config") or {}).get("budget"))
    return {
        "tag": tag,
        "metric": metric.name,
        "goal": metric.goal,
        "experiments": len(history),
        "finished": len(finished),
        "kept": kept,
        "discarded": sum(e.status == ExpStatus.DISCARDED for e in history),
        "crashed": sum(e.status.failed for e in history),
        # candidates with the files of one already measured: answered from the journal, not run
        "duplicates": sum(e.status == ExpStatus.DUPLICATE for e in history),
        # --screen (night/screen.py): counts, the rank check, and why it turned off; None: never on
        "screen": screen.summary(
            journal.events(tag, EventKind.SCREEN),
            journal.events(tag, EventKind.SCREEN_OFF),
            history,
            info.get("config") or {},
            metric.improvement,
        ),
        "running": [
            {"id": e.id, "description": e.description, "since": e.runs[-1].started if e.runs else None} for e in running
        ],
        "runs": len(runs),
        # A baseline still measuring (or stopped during its seeds): its value as far as measured.
        "baseline": {
            "id": baseline.id if baseline else None,
            "value": _baseline_value(baseline),
            "runs": len(baseline.ok_values) if baseline else 0,
            "measuring": bool(baseline) and not baseline.status.final,
        },
        "best": {
            "id": best.id if best else None,
            "value": best.value if best else None,
            "commit": best.commit_sha if best else None,
            "description": best.description if best else None,
        },
        "gain": gain,
        "experiments_per_hour": len(finished) / hours if finished else 0.0,
        "noise": _noise(history, design),
        # The gain the noise judge would keep with 80 % probability now (judges/power.py), in
        # metric units; None before the noise is measured, or under another judge.
        "detectable_gain": detectable,
        "runs_per_kept": len(runs) / kept if kept else None,
        "flagged": [e["message"] for e in journal.events(tag, EventKind.IGNORES_SEED)],
        "drift": [e["message"] for e in journal.events(tag, EventKind.DRIFT)],
        "tracker": [e["message"] for e in journal.events(tag, EventKind.TRACKER)],  # --log-to failures (trackers.py)
        # The validation data's guards (heldout_store.py, watch.py): runs that opened the held-out
        # data, candidates whose val gain the held-out slice did not match, and the sandbox in use.
        "heldout": {
            "reads": [e["message"] for e in journal.events(tag, EventKind.READS_HELDOUT)],
            "fits_validation": [e["message"] for e in journal.events(tag, EventKind.FITS_VALIDATION)],
        },
        "started": started,
        "updated": last,
        "base_commit": info.get("base_commit"),
        "config": info.get("config", {}),
        "llm": usage_summary(history, journal.events(tag)),  # tokens, cost, fallback (usage.py)
        "slots": slots,  # each slot of the latest controller: where, what, progress, duty_cycle
        "duty_cycle": duty,  # training seconds / wall seconds, mean over the slots
    }


def noise_line(d: dict) -> str | None:
    """One line on the noise and what the judge can see: the run sd, the paired-difference sd,
    and the smallest gain it would keep with 80 % probability now."""
    n = d["noise"]
    if n["sd"] is None:
        return None
    text = f"noise: one run's sd {n['sd']:.6f} ({n['df']} df)"
    if n.get("paired_sd") is not None:
        text += f", a seed-for-seed difference's sd {n['paired_sd']:.6f} ({n['paired_df']} df)"
    if d.get("detectable_gain") is not None:
        text += f"; smallest confirmable gain {d['detectable_gain']:.6f} ({n['design']}, 80 % power)"
    return text
