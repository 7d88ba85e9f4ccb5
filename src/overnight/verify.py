"""`overnight verify` and `overnight ablate`: the morning's second opinion.

verify: the baseline and the final best, re-run on FRESH seeds (never used during the night,
so nothing was selected on them), paired by seed; prints the gain with a confidence interval,
and each side's median wall seconds per run.

ablate: each kept change taken out of the final best in turn (leave-one-out): its diff is
reverse-applied to the best; a change to constants that later changes touched is reverted
by setting those constants back; a change that later changes fully overrode is reported as
superseded. Each variant runs on the same fresh seeds as the best; the contribution is the
paired difference.

Both run under the night's clock and budget unless told otherwise (`--clock`, `--budget`): a
gain measured under a proxy (the tokens or steps clock, a short budget) is checked in the
currency the user spends, wall time at the budget they train with. The commits run seed by
seed in turn, so a drift of the machine's speed hits each alike. Under the steps clock each
commit trains the tokens its journaled cost buys (a commit the night never ran, an ablation
variant, measures its own on its first run, against the best's).

Results are journaled as events (kind "verify" / "ablate", JSON, with the clock and budget)
and shown in the report.
"""

from __future__ import annotations

import json
import statistics
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from overnight import gitops, knobs, layout
from overnight.errors import OvernightError
from overnight.journal import Journal
from overnight.judges.stats import mean, paired_interval
from overnight.night import seeding
from overnight.records import EventKind, Experiment, ExpStatus, RunRequest, RunStatus, incumbent
from overnight.run.environ import protected_hashes
from overnight.run.execute import execute
from overnight.task import TaskSpec, with_clock

WALL_WARNING = 0.10  # a side that takes this much more wall time per run than the other is said to


@dataclass
class Comparison:
    label: str
    values: list[float]
    gain: float  # improvement over the reference, metric units, positive = better
    low: float
    high: float
    note: str = ""
    wall: float | None = None  # median wall seconds per run of `values`
    ref_wall: float | None = None  # ... of the reference's (the baseline; for ablate, the best)


@dataclass
class Measured:
    values: list[float]
    walls: list[float]

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)


class Remeasure:
    """Runs commits of a tag on fresh seeds, outside the night's experiments, under the night's
    clock and budget or the ones given."""

    def __init__(
        self,
        root: Path,
        task: TaskSpec,
        journal: Journal,
        tag: str,
        runs: int,
        stop: threading.Event | None = None,
        clock: str | None = None,
        budget: float | None = None,
        seeds: list[int] | None = None,  # a test's own; else drawn
    ):
        if runs < 2:
            raise OvernightError("--runs must be at least 2 for a confidence interval")
        night_clock, night_budget = task.clock, task.budget
        task = with_clock(task.with_budget(budget), clock)
        self.root, self.task, self.journal, self.tag, self.runs = root, task, journal, tag, runs
        # Fresh seeds from a secret of this check's own (night/seeding.py): none a candidate could
        # have been chosen for, none the night used (but by a 2^-31 chance), new at every check.
        if seeds is None:
            secret = seeding.new_secret()
            seeds = [seeding.seed(secret, i) for i in range(runs)]
        self.seeds = list(seeds)[:runs]
        self.stop = stop
        base = journal.tag_info(tag)["base_commit"]
        self.protected = protected_hashes(task, base)
        self.paths = layout.TagPaths(layout.state_dir(root), tag)
        # Run folders of a check under another clock or budget keep their own names (and logs).
        self.suffix = "".join(
            [
                f"-{task.clock}" if task.clock != night_clock else "",
                f"-{task.budget:g}s" if task.budget != night_budget else "",
            ]
        )
        # The steps clock: commit -> (seconds per token, reference), the night's where it measured them.
        self.costs: dict[str, tuple[float, float | None]] = {}
        if task.clock == "steps":
            for e in journal.experiments(tag):
                if e.cost is not None and e.commit_sha:
                    self.costs.setdefault(e.commit_sha, (e.cost, e.cost_ref))

    def measure(self, sides: list[tuple[str, str, str | None]]) -> list[Measured]:
        """(label, commit, reference commit) each on the same fresh seeds, seed by seed in turn.
        Under the steps clock a commit whose cost is unknown measures it on its first run,
        against its reference commit's cost."""
        out = [Measured([], []) for _ in sides]
        for i, seed in enumerate(self.seeds):
            for (label, commit, ref), got in zip(sides, out):
                res = self._run(label + self.suffix, commit, ref, seed, i)
                got.values.append(res.value)
                got.walls.append(res.wall_seconds)
        return out

    def _run(self, label: str, commit: str, ref: str | None, seed: int, i: int):
        self._check_stop()
        cost, cost_ref = self.costs.get(commit, (None, self.costs.get(ref, (None,))[0] if ref else None))
        req = RunRequest(
            commit=commit,
            seed=seed,
            run_dir=self.paths.verify_dir(label, i),  # by index: a later check reuses the folder
            worktree=self.paths.verify_worktree(label, i),
            protected_hashes=self.protected,
            cost=cost if self.task.clock == "steps" else None,
            cost_ref=cost_ref if self.task.clock == "steps" else None,
        )
        res = execute(self.task, req, stop=self.stop)  # on stop: killed at once, worktree removed
        self._check_stop()
        if res.status != RunStatus.OK:
            raise OvernightError(
                f"{label} failed on seed {seed} ({res.status.value}: {res.error}) — see {res.log_path}"
            )
        if self.task.clock == "steps" and commit not in self.costs and res.summary.get("cost"):
            self.costs[commit] = (res.summary["cost"], res.summary.get("cost_ref"))
        return res

    def _check_stop(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise OvernightError(
                "stopped (Ctrl-C or SIGTERM) before every run was measured; nothing was "
                "recorded — run the same command again for the result"
            )

    def compare(
        self, label: str, values: Measured, reference: Measured, note: str = "", better: str = "values"
    ) -> Comparison:
        """Paired by seed. `gain` > 0 means `values` beat `reference` (better="values") or the
        reverse (better="reference", for ablation: what the change contributes)."""
        sign = self.task.metric.sign
        worse, good = (reference.values, values.values) if better == "values" else (values.values, reference.values)
        diff, low, high = paired_interval([sign * w for w in worse], [sign * g for g in good])
        return Comparison(label, values.values, diff, low, high, note, values.wall, reference.wall)

    def conditions(self) -> dict:
        """What the check ran under, journaled with its result."""
        return {"clock": self.task.clock, "budget": self.task.budget, "runs": self.runs, "seeds": self.seeds}


def _history(journal: Journal, tag: str) -> tuple[Experiment, Experiment, list[Experiment]]:
    history = journal.experiments(tag)
    if not history:
        raise OvernightError(f"tag {tag} has no experiments yet — run `overnight run` first")
    baseline = history[0]
    best = incumbent(history)
    return baseline, best, history


def verify(rm: Remeasure) -> tuple[list[float], Comparison]:
    baseline, best, _ = _history(rm.journal, rm.tag)
    if best.id == baseline.id:
        raise OvernightError("nothing was kept yet: the best is the baseline — nothing to verify")
    base, top = rm.measure(
        [
            (f"baseline-{baseline.id}", baseline.commit_sha, None),
            (f"best-{best.id}", best.commit_sha, baseline.commit_sha),
        ]
    )
    result = rm.compare(f"#{best.id}", top, base)
    rm.journal.event(
        rm.tag,
        EventKind.VERIFY,
        json.dumps({"baseline": base.values, "best_id": best.id, **asdict(result), **rm.conditions()}),
    )
    return base.values, result


def kept_chain(history: list[Experiment], best: Experiment) -> list[Experiment]:
    """The kept changes that the best is built from, oldest first (baseline excluded)."""
    by_id = {e.id: e for e in history}
    chain, e = [], best
    while e is not None and e.parent_id is not None:
        if e.status == ExpStatus.KEPT:
            chain.append(e)
        e = by_id.get(e.parent_id)
    return chain[::-1]


def without_change(rm: Remeasure, best: Experiment, change: Experiment, parent: Experiment) -> tuple[str | None, str]:
    """(commit of the best without `change`, note); commit None when it cannot be taken out."""
    msg = f"ablate #{change.id} from #{best.id}"
    sha = gitops.revert_onto(rm.root, best.commit_sha, change.diff or "", msg)
    if sha is not None:
        return sha, "reverse-applied"
    # Constants that later changes moved again: put back only what still has this change's value.
    edits, reverted = {}, []
    for path in change.edits:
        mine = gitops.read_file(rm.root, change.commit_sha, path)
        before = gitops.read_file(rm.root, parent.commit_sha, path)
        now = gitops.read_file(rm.root, best.commit_sha, path)
        if mine is None or before is None or now is None:
            return None, "does not revert cleanly"
        c_mine, c_before, c_now = (knobs.find_constants(x.decode()) for x in (mine, before, now))
        back = {
            n: c_before[n].value
            for n in c_mine
            if n in c_before
            and n in c_now
            and c_mine[n].value != c_before[n].value
            and c_now[n].value == c_mine[n].value
        }
        if back:
            edits[path] = knobs.rewrite(now.decode(), back)
            reverted += [f"{n}={c_before[n].text}" for n in back]
    if not edits:
        return None, "superseded: later kept changes replaced everything it changed"
    return gitops.make_commit(rm.root, best.commit_sha, edits, msg), "constants put back: " + ", ".join(reverted)


def ablate(rm: Remeasure) -> tuple[list[float], list[Comparison]]:
    _, best, history = _history(rm.journal, rm.tag)
    chain = kept_chain(history, best)
    if not chain:
        raise OvernightError("nothing was kept yet — nothing to ablate")
    by_id = {e.id: e for e in history}
    variants = [(change, *without_change(rm, best, change, by_id[change.parent_id])) for change in chain]
    measured = [(f"without-{change.id}", sha, best.commit_sha) for change, sha, _ in variants if sha is not None]
    top, *rest = rm.measure([(f"best-{best.id}", best.commit_sha, None), *measured])
    results, rest = [], iter(rest)
    for change, sha, note in variants:
        if sha is None:
            results.append(Comparison(f"#{change.id}", [], float("nan"), float("nan"), float("nan"), note))
            continue
        # the change's contribution: how much better the best is than the best without it
        results.append(rm.compare(f"#{change.id}", next(rest), top, note, better="reference"))
    rm.journal.event(
        rm.tag,
        EventKind.ABLATE,
        json.dumps(
            {"best_id": best.id, "best": top.values, "changes": [asdict(r) for r in results], **rm.conditions()}
        ),
    )
    return top.values, results


def latest(journal: Journal, tag: str, kind: str) -> dict | None:
    events = journal.events(tag, kind)
    return json.loads(events[-1]["message"]) if events else None


def describe(c: Comparison, metric_name: str) -> str:
    if not c.values:
        return f"{c.label}: not measured ({c.note})"
    verdict = "confirmed" if c.low > 0 else ("harmful" if c.high < 0 else "not distinguishable from 0")
    return (
        f"{c.label}: gain {c.gain:+.6f} {metric_name} (95 % CI {c.low:+.6f} .. {c.high:+.6f}; "
        f"measured {mean(c.values):.6f} over {len(c.values)} fresh seeds) — {verdict}"
        + (f"; {c.note}" if c.note else "")
    )


def wall_text(c: Comparison, mine: str, theirs: str) -> str:
    """Each side's median wall seconds per run, and a warning when `mine` takes more than
    WALL_WARNING more than `theirs` (what a budget in tokens or steps does not charge)."""
    if not c.wall or not c.ref_wall:
        return ""
    text = f"median wall time per run: {mine} {c.wall:.1f} s, {theirs} {c.ref_wall:.1f} s"
    extra = c.wall / c.ref_wall - 1
    if extra > WALL_WARNING:
        text += f" — the {mine} takes {100 * extra:.0f} % more wall time per run than the {theirs}"
    return text


def conditions_text(event: dict) -> str:
    """'wall clock, 20 s budget' for a journaled check (older ones: the night's, unrecorded)."""
    if "clock" not in event:
        return "the night's clock and budget"
    return f"{event['clock']} clock, {event['budget']:g} s budget"
