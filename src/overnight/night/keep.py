"""What a keep needs beyond the judge's verdict: its re-scores' outcome and the held-out rule.

The lifecycle (lifecycle.py) asks for these; it alone decides the candidate's fate.

    re-scores   a "keep" lands only once every run it counts has been re-scored by the task's
                protected code in a fresh process (rescorer.py, in a slot); under
                `[heldout]` the yardstick's paired runs are re-scored too, for their held-out
                score. `collect_rescores` journals each outcome: an agreeing value is the one
                judged from then on (journal.set_rescored); a disagreement is flagged
                (`rescore-mismatch`) and handed back, for the lifecycle to discard the
                candidate; when all agree, the lifecycle asks the judge again
    held-out    under `[heldout]`: a gain on the metric the held-out slice does not share is a
                discard (`fits-validation`); no held-out score by the harness, no keep

Nothing here decides on numbers a run wrote about itself.
"""

from __future__ import annotations

from dataclasses import replace

from overnight.errors import OvernightError
from overnight.judges.base import Verdict
from overnight.judges.stats import mean
from overnight.night.rescorer import Rescorer
from overnight.night.state import Night
from overnight.records import EventKind, Experiment, RunResult, RunStatus, VerdictAction
from overnight.run import heldout_store


def watch_hit(res: RunResult) -> bool:
    """A held-out score refused because the held-out data was opened while it ran: inotify
    cannot say by whom, so when a candidate ran alongside, the reference's run is not to blame."""
    return res.status == RunStatus.MISMATCH and (res.error or "").startswith("reads-heldout:")


def heldout_check(n: Night, e: Experiment, target: Experiment, verdict: Verdict) -> Verdict:
    """The verdict, turned into a discard flagged `fits-validation` when `e`'s gain on the
    metric over `target` is not matched on the held-out slice (run/heldout_store.py says
    what the slice is and how it is kept from the runs). Journals the figures."""
    task = n.task
    if task.heldout is None or verdict.action != VerdictAction.KEEP:
        return verdict
    scored = {}  # experiment id -> {seed: (value, held-out value)}
    for exp in (e, target):
        rows = {}
        for r in exp.runs:
            h = heldout_store.run_values(task, r)
            if h is not None and r.value is not None:
                rows.setdefault(r.seed, (r.value, h))
        scored[exp.id] = rows
    if not scored[e.id] and heldout_store.loaded(task) is not None:
        # No keep without a held-out score the harness itself ran (a run cannot opt out of it).
        n.journal.event(n.tag, EventKind.HELDOUT, f"#{e.id}: no held-out score by the harness: not kept")
        return replace(
            verdict,
            action=VerdictAction.DISCARD,
            flags=(*verdict.flags, EventKind.NO_HELDOUT),
            reason=f"no held-out score by the harness for its runs; the judge said: {verdict.reason}",
        )
    if not scored[e.id] or not scored[target.id]:
        n.journal.event(
            n.tag,
            EventKind.HELDOUT,
            f"#{e.id}: no held-out score for it or #{target.id} (scored before [heldout] existed?): not checked",
        )
        return verdict
    # Seed for seed where both have runs: the same seed is the same data order, and at a short
    # budget the order moves val and held-out apart far more than any honest change does
    # (bench/heldout.py: honest gaps 0.002-0.006 bpb paired, up to 0.135 across seeds).
    common = sorted(set(scored[e.id]) & set(scored[target.id]))
    mine = [scored[e.id][s] for s in common] or list(scored[e.id].values())
    theirs = [scored[target.id][s] for s in common] or list(scored[target.id].values())
    val_gain = task.metric.improvement(mean([v for v, _ in mine]), mean([v for v, _ in theirs]))
    ho_gain = task.metric.improvement(mean([h for _, h in mine]), mean([h for _, h in theirs]))
    how = f"paired on {len(common)} seed(s)" if common else f"means of {len(mine)} and {len(theirs)} run(s)"
    need = task.heldout.min_share * val_gain - task.heldout.max_gap
    figures = (
        f"{task.metric.name} gain {val_gain:+.4f} over #{target.id}, held-out gain {ho_gain:+.4f} "
        f"(needed {need:+.4f} = {task.heldout.min_share:g} x gain - {task.heldout.max_gap:g}; "
        f"{how})"
    )
    n.journal.event(n.tag, EventKind.HELDOUT, f"#{e.id}: {figures}")
    if ho_gain >= need:
        return verdict
    return replace(
        verdict,
        action=VerdictAction.DISCARD,
        flags=(*verdict.flags, EventKind.FITS_VALIDATION),
        reason=f"fits the validation data: {figures}; the judge said: {verdict.reason}",
    )


class Keeper:
    def __init__(self, night: Night, rescorer: Rescorer):
        self.night = night
        self.rescorer = rescorer

    # --- the re-scores' outcome ------------------------------------------------------------------
    def collect_rescores(self, stopping: bool) -> tuple[bool, list[tuple[Experiment, RunResult]]]:
        """Journal the re-scores of each experiment whose every re-score has ended. Returns
        (whether a decision may have changed: the scheduler plans again, the experiments whose
        re-score disagreed or failed, each with the first such result: the lifecycle ends them)."""
        n, replan, bad_ones = self.night, False, []
        for exp_id, results in self.rescorer.finished():
            exp = n.journal.experiment(exp_id)
            check = exp.parent_id is None and exp.status.final  # the kept baseline's (lifecycle: check)
            replan |= not check  # a check decides nothing: no re-plan (and no early ask)
            if stopping:
                # Stopping: what ends now journals nothing, whether the stop cut it (INTERRUPTED)
                # or it beat the cancel (a Ray task may finish before ray.cancel reaches it):
                # one rule, re-done on resume, as Rescorer.close says.
                continue
            bad: RunResult | None = None
            own = {r.id for r in exp.runs}
            for run_id, res in sorted(results.items()):
                if watch_hit(res) and (run_id not in own or check):
                    continue  # the reference's score, spoiled by another run's open: again when needed
                if run_id not in own:  # a yardstick's run, re-scored for its held-out score
                    self._yardstick_rescored(exp, run_id, res)
                elif res.status == RunStatus.OK:
                    n.journal.set_rescored(run_id, res.summary["rescored"], res.summary, judged=not check)
                elif res.status == RunStatus.MISMATCH:
                    n.journal.set_mismatch(n.tag, run_id, res.error)
                    bad = bad or res
                elif res.summary.get("lost"):  # its run directory is gone: run it again
                    n.journal.set_lost(n.tag, run_id, f"not re-scored: {res.error}")
                    n.obs.message(f"#{exp_id}: run {run_id} cannot be re-scored ({res.error}); running it again")
                # INTERRUPTED (Ctrl-C): nothing journaled, re-done on resume
            if bad is not None:
                bad_ones.append((n.journal.experiment(exp_id), bad))
        return replan, bad_ones

    def _yardstick_rescored(self, exp: Experiment, run_id: int, res: RunResult) -> None:
        """A run of a kept experiment, re-scored for the keep of `exp`. Agreed: journaled with its
        held-out score. Disagreed: the yardstick's run is flagged and no longer counted (the
        candidate is not at fault; it is judged again); for the baseline that means the task's
        re-score is broken, and the night stops. Gone (a Ray node left): paired without it."""
        n = self.night
        owner = n.journal.experiment(self.rescorer.owner[run_id])
        if res.status == RunStatus.OK:
            n.journal.set_rescored(run_id, res.summary["rescored"], res.summary)
            return
        if res.status == RunStatus.MISMATCH:
            n.journal.set_mismatch(n.tag, run_id, res.error)
            if owner.parent_id is None:
                raise OvernightError(
                    f"the baseline's re-score failed ({res.error}) — fix the task's rescore "
                    f"command first; log: {res.log_path}"
                )
            left = n.journal.experiment(owner.id).ok_values
            if left:
                n.journal.set_value(owner.id, mean(left))
            return
        if res.summary.get("lost"):
            self.rescorer.unavailable.add(run_id)
            n.obs.message(
                f"#{exp.id}: run {run_id} of #{owner.id} cannot be re-scored ({res.error}); its seed goes unpaired"
            )
