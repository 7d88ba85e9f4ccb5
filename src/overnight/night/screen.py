"""Noise-aware multi-fidelity screening (`overnight run --screen`): a candidate's first run is
short, and only one that is not clearly worse there pays for full-budget runs.

    screen run     the candidate at `fraction` of the budget (OVERNIGHT_BUDGET says so: any
                   task works), under the screen seed, paired with the incumbent's screen run
                   under that seed (run once per incumbent and reused)
    decision       the paired gain d at the short budget over sigma_screen; z < `z` (default
                   -1.28: a change as good as the incumbent at the short budget is screened out
                   10 % of the time, a better one less) -> `screened` (no full run); else
                   promoted: its first full run, then the usual judge decides
    audit          every `audit_every`-th candidate the screen would drop is promoted anyway
                   (flagged "audit"): the screen's own check, over the whole range of changes
    rank check     for each candidate with both a screen run and a full run, its short gain and
                   its full gain under the screen seed; once `rank_min` such pairs exist and
                   their rank agreement (Kendall's tau) is below `rank_tau`, or an audited
                   candidate is kept (a change the screen would have dropped was a real gain),
                   screening turns itself off for the rest of the night (event `screen-off`,
                   in status and the report)

sigma_screen: the full-budget paired-difference sd the judge measured (sqrt(2) x the run sd
while none is measured: a bound, as the judge's), scaled by how the run sd changes with the
budget (the baseline's run sd under `baseline_seeds` short seeds over its full-budget sd). It
assumes pairs at the short budget correlate as they do at the full budget; the rank check is
what catches a task where they do not. Every decision is an event (`screen`, JSON), so a
resumed night reaches the same ones and reports read them back.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import StrEnum

from overnight.judges.pooled import latest_by_seed, noise_of, paired_noise_of
from overnight.judges.stats import pooled_sd
from overnight.night.requests import Finish, Runs, Want
from overnight.records import EventKind, Experiment, ExpStatus, Run, RunStatus


@dataclass(frozen=True)
class ScreenSettings:
    fraction: float = 0.25  # of the budget, for a screen run
    z: float = -1.28  # screened out below this many sigma_screen (a paired gain of 0: 10 %)
    baseline_seeds: int = 4  # the baseline's screen runs: how the run sd scales with the budget
    audit_every: int = 5  # every n-th candidate the screen would drop runs at full budget anyway
    rank_min: int = 8  # candidates with both fidelities before the rank check may turn it off
    rank_tau: float = 0.2  # ... when Kendall's tau between short and full gains is below this
    paired_min_df: int = 4  # the judge's paired sd counts once measured on this many df


class ScreenVerdict(StrEnum):
    """What the screen decided of a candidate (journaled in its `screen` event as the string)."""

    OUT = "out"  # clearly worse at the short budget: screened out, never run at full budget
    PROMOTED = "promoted"  # not clearly worse: full-budget runs and the judge
    AUDIT = "audit"  # would be out, run at full budget anyway: the screen's own check


def ok(run: Run) -> bool:
    return run.status == RunStatus.OK and run.value is not None


def screen_value(e: Experiment, seed: int) -> float | None:
    run = latest_by_seed(e.screens).get(seed)
    return None if run is None else run.value


def failed_at(e: Experiment, seed: int) -> bool:
    """Whether its latest screen run under `seed` ended and did not score."""
    mine = [r for r in e.screens if r.seed == seed and r.status not in (RunStatus.INTERRUPTED, RunStatus.RUNNING)]
    return bool(mine) and not ok(mine[-1])


def sigma_screen(history: list[Experiment], s: ScreenSettings) -> float | None:
    """The sd of a paired difference at the short budget (module docstring), or None."""
    full = noise_of(history)
    short = pooled_sd([[r.value for r in latest_by_seed(e.screens).values()] for e in history])
    if not full.known or full.sd <= 0 or short.df < 1:
        return None
    paired = paired_noise_of(history)
    diff = paired.sd if paired.df >= s.paired_min_df else math.sqrt(2) * full.sd
    return diff * short.sd / full.sd


def kendall_tau(pairs: list[tuple[float, float]]) -> float:
    """Kendall's tau-a: concordant minus discordant pairs over all pairs (ties count 0)."""
    n = len(pairs)
    total = 0
    for i in range(n):
        for j in range(i + 1, n):
            a = (pairs[i][0] - pairs[j][0]) * (pairs[i][1] - pairs[j][1])
            total += (a > 0) - (a < 0)
    return total / (n * (n - 1) / 2) if n > 1 else 0.0


def decisions(events: list[dict]) -> dict[int, dict]:
    """The journaled screen decisions: experiment id -> {verdict, gain, z, seed, why}."""
    out = {}
    for ev in events:
        d = json.loads(ev["message"])
        out.setdefault(d["exp"], d)  # the first decision stands (a resumed night re-reads it)
    return out


def agreement(history: list[Experiment], decided: dict[int, dict], improvement) -> list[tuple[float, float]]:
    """(short gain, full gain under the screen seed) for each screened candidate that also ran
    at full budget under that seed, its parent too."""
    by_id = {e.id: e for e in history}
    pairs = []
    for exp_id, d in sorted(decided.items()):
        e, gain = by_id.get(exp_id), d.get("gain")
        if e is None or gain is None or d["verdict"] == ScreenVerdict.OUT or e.parent_id not in by_id:
            continue
        mine, theirs = latest_by_seed(e.runs), latest_by_seed(by_id[e.parent_id].runs)
        seed = d["seed"]
        if seed in mine and seed in theirs:
            pairs.append((gain, improvement(mine[seed].value, theirs[seed].value)))
    return pairs


def off_reason(
    history: list[Experiment], decided: dict[int, dict], improvement, s: ScreenSettings
) -> tuple[str | None, float | None, int]:
    """(why screening should turn off or None, Kendall's tau or None, pairs measured)."""
    by_id = {e.id: e for e in history}
    for exp_id, d in sorted(decided.items()):
        e = by_id.get(exp_id)
        if d["verdict"] == ScreenVerdict.AUDIT and e is not None and e.status == ExpStatus.KEPT:
            return (
                f"#{exp_id} was kept at full budget although the screen would have dropped it "
                f"(short gain {d['gain']:+.4g}, z {d['z']:.2f}): short runs miss real gains here",
                None,
                0,
            )
    pairs = agreement(history, decided, improvement)
    tau = kendall_tau(pairs) if len(pairs) >= 2 else None
    if len(pairs) >= s.rank_min and tau is not None and tau < s.rank_tau:
        return (
            f"short and full budgets rank changes alike too rarely: Kendall's tau {tau:.2f} over "
            f"{len(pairs)} candidates (screening pays only above {s.rank_tau:g})",
            tau,
            len(pairs),
        )
    return None, tau, len(pairs)


class Screener:
    """The night's screen: what a candidate without full-budget runs needs next, or its
    decision. Reads the journal only (decisions are events), so a resumed night carries on."""

    def __init__(self, night):
        self.night = night
        self.s: ScreenSettings = night.cfg.screening

    @property
    def on(self) -> bool:
        n = self.night
        return n.cfg.screen and not n.journal.events(n.tag, EventKind.SCREEN_OFF)

    @property
    def budget(self) -> float:
        return self.night.task.budget * self.s.fraction

    def check(self, history: list[Experiment]) -> None:
        """The rank check: turn screening off (for good: an event) when it stopped paying."""
        n = self.night
        decided = decisions(n.journal.events(n.tag, EventKind.SCREEN))
        why, _, _ = off_reason(history, decided, n.task.metric.improvement, self.s)
        if why:
            n.journal.event(n.tag, EventKind.SCREEN_OFF, why)
            n.obs.message(f"screening off: {why}")

    def step(self, e: Experiment, target: Experiment, history: list[Experiment], busy: set[int]) -> Finish | Runs:
        """What candidate `e`, with no full-budget run yet, needs from the screen against
        `target`: its screen runs and the references' (Runs; none: wait for those running),
        its first full run once promoted, or its end when screened out (Finish)."""
        n = self.night
        seed = n.seed(0)
        decided = decisions(n.journal.events(n.tag, EventKind.SCREEN))
        d = decided.get(e.id)
        if d is None:
            wants = []
            base = history[0]
            for s in map(n.seed, range(self.s.baseline_seeds)):  # how the sd scales with the budget
                if base.id not in busy and screen_value(base, s) is None and not failed_at(base, s):
                    wants.append(Want(base.id, remeasure=True, priority=1, seed=s, screen=True))
            c, t = screen_value(e, seed), screen_value(target, seed)
            if c is None:
                wants.append(Want(e.id, priority=1, seed=seed, screen=True))
            if t is None and not failed_at(target, seed) and target.id not in busy and target.id != base.id:
                wants.append(Want(target.id, remeasure=True, priority=1, seed=seed, screen=True))
            if failed_at(target, seed):
                d = self._decide(
                    e, ScreenVerdict.PROMOTED, None, None, "the incumbent's screen run failed: not screened"
                )
            elif wants or c is None or t is None:
                return Runs(tuple(wants))
            else:
                d = self._judge(e, c, t, history, decided)
        if d["verdict"] == ScreenVerdict.OUT:
            return Finish(ExpStatus.SCREENED, d["why"])
        return Runs((Want(e.id, priority=1),))

    def _judge(self, e: Experiment, c: float, t: float, history: list[Experiment], decided: dict[int, dict]) -> dict:
        n, s = self.night, self.s
        pct = f"{100 * s.fraction:g} % of the budget"
        gain = n.task.metric.improvement(c, t)
        sigma = sigma_screen(history, s)
        if sigma is None or sigma <= 0:
            return self._decide(e, ScreenVerdict.PROMOTED, gain, None, f"not screened: no noise at {pct} measured yet")
        z = gain / sigma
        said = f"at {pct}: {c:.6g} vs the incumbent's {t:.6g} (seed {n.seed(0)}, z {z:.2f}"
        if z >= s.z:
            return self._decide(e, ScreenVerdict.PROMOTED, gain, z, f"promoted by the screen {said} >= {s.z:g})")
        dropped = sum(d["verdict"] != ScreenVerdict.PROMOTED for d in decided.values())
        if s.audit_every and (dropped + 1) % s.audit_every == 0:
            return self._decide(
                e, ScreenVerdict.AUDIT, gain, z, f"audit: out {said} < {s.z:g}), run at full budget anyway"
            )
        return self._decide(e, ScreenVerdict.OUT, gain, z, f"screened out {said} < {s.z:g})")

    def _decide(self, e: Experiment, verdict: ScreenVerdict, gain: float | None, z: float | None, why: str) -> dict:
        n = self.night
        d = {"exp": e.id, "verdict": verdict, "gain": gain, "z": z, "seed": n.seed(0), "why": why}
        n.journal.event(n.tag, EventKind.SCREEN, json.dumps(d))
        return d


def summary(events_screen: list[dict], events_off: list[dict], history: list[Experiment], config: dict, improvement):
    """`status --json`'s "screen": None when the night never screened, else its counts, the rank
    check and, once it turned itself off, why."""
    if not config.get("screen") and not events_screen:
        return None
    known = {f for f in ScreenSettings.__dataclass_fields__}
    s = ScreenSettings(**{k: v for k, v in (config.get("screening") or {}).items() if k in known})
    decided = decisions(events_screen)
    _, tau, pairs = off_reason(history, decided, improvement, s)
    verdicts = [d["verdict"] for d in decided.values()]
    return {
        "on": bool(config.get("screen")) and not events_off,
        "fraction": s.fraction,
        "screened_out": verdicts.count(ScreenVerdict.OUT),
        "promoted": verdicts.count(ScreenVerdict.PROMOTED),
        "audits": verdicts.count(ScreenVerdict.AUDIT),
        "rank_tau": tau,  # Kendall's tau, short vs full gains (None below 2 candidates)
        "rank_pairs": pairs,
        "off": events_off[0]["message"] if events_off else None,
        # full-budget runs the screen spared, net of its own short runs (in full-run units)
        "runs_saved": verdicts.count(ScreenVerdict.OUT) - s.fraction * sum(len(e.screens) for e in history),
    }


def summary_line(d: dict | None) -> str | None:
    if d is None:
        return None
    text = (
        f"screen at {100 * d['fraction']:g} % of the budget: {d['screened_out']} screened out, "
        f"{d['promoted']} promoted, {d['audits']} audited; {d['runs_saved']:.1f} full runs saved"
    )
    if d["rank_tau"] is not None:
        text += f"; short vs full ranks: Kendall's tau {d['rank_tau']:.2f} over {d['rank_pairs']}"
    return text + (f"; OFF: {d['off']}" if d["off"] else "" if d["on"] else "; off")
