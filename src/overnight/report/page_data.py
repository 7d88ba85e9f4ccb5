"""What report.html and `overnight serve` show, computed from the journal alone.

One pass over the journal gives every experiment as the page shows it (`ExpView`: its values per
seed, its gain over its parent with an interval, what it cost, its runs, log tail, the model's
reply and the events that name it) and the night's summary (the status numbers, the kept chain
with `ablate`'s contributions, `verify`'s result, the events worth a look). html.py and
html_chart.py only lay this out; the markdown report reads the same status numbers.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from overnight import layout
from overnight.journal import Journal
from overnight.judges.stats import mean, paired_interval, sample_var, t_quantile
from overnight.night.state import REBASED_KEY
from overnight.records import EventKind, Experiment, ExpStatus, Run, RunStatus
from overnight.report.status import status_dict
from overnight.task import Metric, TaskSpec

# What of each experiment's text the page holds (the files have all of it): a thousand
# experiments must stay a page a browser opens in well under a second (bench/report_page.py).
REPLY_CAP = 4000  # characters of a model's reply or an agent's log
LOG_TAIL_CAP = 2500  # characters of a failed run's log tail
OK_TAIL_LINES = 12  # lines of a run that went well: its summary block and the last steps

# Events that say a guard fired or the machine moved: shown in the summary's first list.
GUARD_EVENTS = (
    EventKind.DRIFT,
    EventKind.READS_HELDOUT,
    EventKind.FITS_VALIDATION,
    EventKind.NO_HELDOUT,
    EventKind.RESCORE_MISMATCH,
    EventKind.IGNORES_SEED,
    EventKind.JOURNAL_TAMPERED,
    EventKind.INCUMBENT_FAILED,
    EventKind.HELDOUT,
)
# Bookkeeping, shown elsewhere on the page (slots, screening, verify/ablate) or not at all.
QUIET_EVENTS = (
    EventKind.SLOTS,
    EventKind.SETUP,
    EventKind.BASELINE,
    EventKind.SCREEN,
    EventKind.VERIFY,
    EventKind.ABLATE,
    EventKind.SURVIVORS,
)
_MENTION = re.compile(r"#(\d+)\b")


@dataclass
class ExpView:
    exp: Experiment
    gain: float | None = None  # over its parent, metric units, positive = better
    low: float | None = None  # 95 % interval of the gain (None: too few runs for one)
    high: float | None = None
    duration: float = 0.0  # wall seconds of all its runs, screens included
    budget: str = ""  # the seconds its runs were given, e.g. "20" or "5 screen + 20"
    reply: str | None = None  # the model's reply (llm) or the agent's log (agent), capped
    reply_path: str | None = None
    events: list[dict] = field(default_factory=list)  # journal events that name it
    x: int | None = None  # its place on the chart (finished experiments only)

    @property
    def id(self) -> int:
        return self.exp.id

    @property
    def seed_values(self) -> list[tuple[int, float]]:
        return [(r.seed, r.value) for r in self.exp.runs if r.status == RunStatus.OK and r.value is not None]

    @property
    def log_tail(self) -> str:
        """The last run's tail, capped from the start: all of it that the journal has, up to
        LOG_TAIL_CAP, when the run failed (it says why); its last lines when it went well."""
        runs = [r for r in (*self.exp.screens, *self.exp.runs) if r.log_tail]
        if not runs:
            return ""
        last = runs[-1]
        if last.status == RunStatus.OK:
            return "\n".join(last.log_tail.rstrip("\n").split("\n")[-OK_TAIL_LINES:])
        return last.log_tail[-LOG_TAIL_CAP:]

    @property
    def log_path(self) -> str | None:
        runs = [*self.exp.screens, *self.exp.runs]
        return next((r.log_path for r in reversed(runs) if r.log_path), None)


@dataclass
class PageData:
    tag: str
    metric: Metric
    budget: float
    status: dict  # status_dict: the `status --json` object
    experiments: list[ExpView]
    chain: list[dict]  # kept changes the best is built from: id, description, gain, contribution
    verify: dict | None  # the latest `overnight verify` result (verify.py's event)
    verifications: list[dict]  # every one, oldest first: each with its clock and budget
    ablate: dict | None
    guard_events: list[dict]
    other_events: list[dict]
    importances: dict[str, float] | None = None
    live: bool = False
    version: str = ""  # the journal's version it was drawn from (serve.py); page.js polls for a newer one

    def by_id(self) -> dict[int, ExpView]:
        return {v.id: v for v in self.experiments}


def gain_interval(e: Experiment, parent: Experiment | None, metric: Metric) -> tuple[float | None, ...]:
    """(gain, low, high) of `e` over its parent, the gain at the interval's centre: paired by
    seed where they share two or more seeds (as the noise judge compares them), else Welch's
    interval on the two means of their runs; with fewer than two runs on a side, the difference
    of the judged values and no interval."""
    if parent is None or e.value is None or parent.value is None:
        return None, None, None
    mine = {r.seed: r.value for r in e.runs if r.status == RunStatus.OK and r.value is not None}
    theirs = {r.seed: r.value for r in parent.runs if r.status == RunStatus.OK and r.value is not None}
    common = sorted(set(mine) & set(theirs))
    s = metric.sign
    if len(common) >= 2:
        return paired_interval([s * theirs[k] for k in common], [s * mine[k] for k in common])
    a, b = list(mine.values()), list(theirs.values())
    if len(a) < 2 or len(b) < 2:
        return metric.improvement(e.value, parent.value), None, None
    gain = metric.improvement(mean(a), mean(b))
    va, vb = sample_var(a) / len(a), sample_var(b) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return gain, gain, gain
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = t_quantile(0.975, df) * se  # Welch-Satterthwaite df, fractional as scipy takes it
    return gain, gain - half, gain + half


def _budget_text(runs: list[Run], screens: list[Run], default: float) -> str:
    full = sorted({r.budget or default for r in runs})
    short = sorted({r.budget for r in screens if r.budget})
    parts = [f"{b:g} screen" for b in short] + [f"{b:g}" for b in full]
    return " + ".join(parts)


def _reply(e: Experiment, state_dir: Path) -> tuple[str | None, str | None]:
    """The model's saved replies (llm, hybrid) or the agent's log, capped; (text, path)."""
    rel = e.params.get("replies") or e.params.get("agent_log")
    if not isinstance(rel, str):
        return None, None
    path = state_dir / rel
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None, str(path)
    if len(text) > REPLY_CAP:  # a reply's start says what it tries; an agent log's end what it did
        keep_end = "agent_log" in e.params
        text = ("…\n" + text[-REPLY_CAP:]) if keep_end else (text[:REPLY_CAP] + "\n…")
    return text, str(path)


def _mentions(events: list[dict]) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for ev in events:
        if ev["kind"] in QUIET_EVENTS:
            continue
        for num in {int(m) for m in _MENTION.findall(ev["message"] or "")}:
            out.setdefault(num, []).append(ev)
    return out


def _chain(views: dict[int, ExpView], best_id: int | None, ablate: dict | None) -> list[dict]:
    """The kept changes the best is built from, oldest first, with ablate's contribution."""
    contribution = {}
    if ablate and ablate.get("best_id") == best_id:
        for c in ablate.get("changes", []):
            num = _MENTION.search(c.get("label", ""))
            if num:
                contribution[int(num.group(1))] = c
    chain, v = [], views.get(best_id) if best_id is not None else None
    while v is not None and v.exp.parent_id is not None:
        if v.exp.status == ExpStatus.KEPT:
            chain.append({"view": v, "ablate": contribution.get(v.id)})
        v = views.get(v.exp.parent_id)
    return chain[::-1]


def _latest(events: list[dict], kind: str) -> dict | None:
    found = _all(events, kind)
    return found[-1] if found else None


def _all(events: list[dict], kind: str) -> list[dict]:
    out = []
    for ev in events:
        if ev["kind"] == kind:
            try:
                out.append(json.loads(ev["message"]))
            except ValueError:
                pass
    return out


def build(journal: Journal, tag: str, task: TaskSpec, state_dir: Path, live: bool = False) -> PageData:
    status = status_dict(journal, tag, task.metric)
    history = journal.experiments(tag)
    events = journal.events(tag)
    by_id = {e.id: e for e in history}
    named = _mentions(events)
    views = []
    finished = [e for e in history if e.status.final]
    place = {e.id: i for i, e in enumerate(finished)}
    for e in history:
        gain, low, high = gain_interval(e, by_id.get(e.parent_id) if e.parent_id else None, task.metric)
        reply, reply_path = _reply(e, state_dir)
        runs = [*e.screens, *e.runs]
        views.append(
            ExpView(
                e,
                gain,
                low,
                high,
                duration=sum(r.wall_seconds or 0.0 for r in runs),
                budget=_budget_text(e.runs, e.screens, task.budget),
                reply=reply,
                reply_path=reply_path,
                events=named.get(e.id, []),
                x=place.get(e.id),
            )
        )
    ablate = _latest(events, "ablate")
    loud = [ev for ev in events if ev["kind"] not in QUIET_EVENTS]
    return PageData(
        tag=tag,
        metric=task.metric,
        budget=task.budget,
        status=status,
        experiments=views,
        chain=_chain({v.id: v for v in views}, status["best"]["id"], ablate),
        verify=_latest(events, "verify"),
        verifications=_all(events, "verify"),
        ablate=ablate,
        guard_events=[ev for ev in loud if ev["kind"] in GUARD_EVENTS],
        other_events=[ev for ev in loud if ev["kind"] not in GUARD_EVENTS],
        live=live,
    )


def rebased_from(e: Experiment) -> int | None:
    value = e.params.get(REBASED_KEY)
    return value if isinstance(value, int) else None


# Below this many complete trials optuna's importances say more about the noise than the knobs.
MIN_TRIALS_FOR_IMPORTANCE = 8


def importances(state_dir: Path, tag: str) -> dict[str, float] | None:
    """Optuna's parameter importances for the tag's study, when there are enough trials."""
    db = layout.optuna_db(state_dir)
    if not db.exists():
        return None
    import optuna

    try:
        study = optuna.load_study(study_name=tag, storage=f"sqlite:///{db}")
    except KeyError:
        return None
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < MIN_TRIALS_FOR_IMPORTANCE:
        return None
    try:
        return optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError):
        return None
