"""The lifecycle (night/lifecycle.py) driven alone, with no scheduler and no executor: histories
are recorded in a real journal of the real toy repository (real git commits, the real noise
judge and screen), and the test answers each request itself, as the scheduler would: `Runs` by
journaling runs with values it chooses, `Rescore` by journaling agreeing re-scores. What is
checked is the request the lifecycle makes and what its `finish` leaves in the journal and git.
"""

from __future__ import annotations

import json

import pytest

from overnight import gitops
from overnight.judges.noise import NoiseSettings
from overnight.night.config import RunConfig
from overnight.night.controller import Controller
from overnight.night.lifecycle import Lifecycle
from overnight.night.requests import Finish, Rescore, Runs, Wait, Want
from overnight.night.screen import ScreenSettings
from overnight.night.state import REBASED_KEY
from overnight.proposers import Proposal
from overnight.records import EventKind, ExpStatus, RunResult, RunStatus
from overnight.testing.nights import set_knobs
from overnight.testing.toy import write_toy

BASE, SHORT = 1.0, 0.1  # the baseline's value; a screen run scores this much worse


def open_night(tmp_path, screen=False, screening=ScreenSettings()):
    root = write_toy(tmp_path / "toy")
    noise = NoiseSettings(baseline_runs=4, remeasure_every=0)
    cfg = RunConfig(tag="t", proposer="random", screen=screen, screening=screening, noise=noise, seed_secret="")
    return Controller(root, cfg)


@pytest.fixture
def night(tmp_path):
    c = open_night(tmp_path)
    yield c.night
    close(c)


def close(c):
    c.night.asker.close()
    c._lock.release()
    c.journal.close()


def record(n, want: Want, value: float, status=RunStatus.OK, error="") -> int:
    """A run as the scheduler would journal it: the seed asked for, else the lowest unused."""
    used = {r.seed for r in n.journal.experiment(want.exp_id).runs}
    seed = want.seed if want.seed is not None else next(n.seed(i) for i in range(99) if n.seed(i) not in used)
    value += 0.001 * (seed % 3 - 1)  # a little noise, the same for every experiment under a seed
    budget = n.task.budget * (n.cfg.screening.fraction if want.screen else 1)
    run_id = n.journal.start_run(want.exp_id, seed, slot="0", budget=budget, screen=want.screen)
    n.journal.finish_run(run_id, RunResult(status, value=value, error=error))
    return run_id


def drive(lc: Lifecycle, exp_id: int, values: dict[int, float], limit: int = 60, stopped: bool = False):
    """Answer the lifecycle's requests for `exp_id` until it asks for something else than runs
    to record or re-scores to agree with: that request is returned (a Finish unapplied), with
    the names of the requests made. A run's value: values[its experiment], SHORT worse when
    short (record adds the seed's noise)."""
    n, asked = lc.night, []
    for _ in range(limit):
        view = lc.look(n.journal.experiments(n.tag), stopped=stopped)
        req = lc.next(n.journal.experiment(exp_id), view)
        asked.append(type(req).__name__)
        if isinstance(req, Runs) and req.wants:
            for w in req.wants:
                record(n, w, values[w.exp_id] + (SHORT if w.screen else 0))
        elif isinstance(req, Rescore):
            for r in req.runs:
                n.journal.set_rescored(r.id, r.value, {"rescored": r.value})
        else:
            return req, asked
    raise AssertionError(f"no decision after {limit} requests: {asked}")


def propose(lc: Lifecycle, **knobs):
    """A candidate on the incumbent, journaled and begun (its commit made)."""
    n = lc.night
    h = n.journal.experiments(n.tag)
    exp = n.add_proposal(n.context(h), set_knobs(**knobs)(n.context(h)))
    return lc.begin(exp, h)


def kept_baseline(lc: Lifecycle):
    n = lc.night
    base = n.add_baseline()
    req, _ = drive(lc, base.id, {base.id: BASE})
    assert isinstance(req, Finish) and (req.status, req.reason) == (ExpStatus.KEPT, "baseline")
    check = lc.finish(base, req)  # the toy has a re-score: its early check on one run
    assert isinstance(check, Rescore) and check.check and len(check.runs) == 1
    return n.journal.experiment(base.id)


def test_a_better_candidate_is_re_scored_then_kept_and_the_branch_moves(night):
    lc = Lifecycle(night)
    base = kept_baseline(lc)
    e = propose(lc, ACTIVATION="gelu")
    assert lc.next(e, lc.look(night.journal.experiments("t"))) == Runs((Want(e.id, priority=1),))
    req, asked = drive(lc, e.id, {base.id: BASE, e.id: BASE - 0.02})
    assert "Rescore" in asked  # no keep before every counted run agreed with its re-score
    assert isinstance(req, Finish) and req.status == ExpStatus.KEPT and req.judged
    lc.finish(e, req)
    kept = night.journal.experiment(e.id)
    assert kept.status == ExpStatus.KEPT and all(r.rescored is not None for r in kept.runs)
    assert gitops.rev_parse(night.root, "refs/heads/overnight/t") == e.commit_sha


def test_a_worse_candidate_is_discarded_without_a_re_score(night):
    lc = Lifecycle(night)
    base = kept_baseline(lc)
    e = propose(lc, LEARNING_RATE=1.0)
    req, asked = drive(lc, e.id, {base.id: BASE, e.id: BASE + 0.05})
    assert isinstance(req, Finish) and req.status == ExpStatus.DISCARDED and "Rescore" not in asked
    lc.finish(e, req)
    assert night.journal.experiment(e.id).status == ExpStatus.DISCARDED
    assert gitops.rev_parse(night.root, "refs/heads/overnight/t") == base.commit_sha


def test_a_crashed_run_ends_its_candidate_and_a_resumed_night_ends_it_too(night):
    lc = Lifecycle(night)
    kept_baseline(lc)
    e = propose(lc, ACTIVATION="gelu")
    want = Want(e.id, priority=1)
    crash = RunResult(RunStatus.CRASH, error="exit 1", log_tail="Traceback: boom")
    assert lc.run_ended(want, 99, "0", crash, stopping=False) is None
    assert night.journal.experiment(e.id).status == ExpStatus.CRASHED
    assert "boom" in night.journal.experiment(e.id).reason
    # Killed between journaling a crashed run and deciding: the next look ends it.
    f = propose(lc, USE_NORM=True)
    record(night, Want(f.id), 0.0, RunStatus.CRASH, error="exit 1")
    resumed = Lifecycle(night)
    f = night.journal.experiment(f.id)
    assert resumed.next(f, resumed.look(night.journal.experiments("t"))) == Finish(ExpStatus.CRASHED, "exit 1")


def test_a_lost_run_is_asked_again_first_unless_the_night_stops(night):
    lc = Lifecycle(night)
    kept_baseline(lc)
    e = propose(lc, ACTIVATION="gelu")
    want, lost = Want(e.id, priority=1), RunResult(RunStatus.INTERRUPTED, error="node died")
    assert lc.run_ended(want, 7, "0", lost, stopping=False) == Runs((want,), first=True)
    assert lc.run_ended(want, 7, "0", lost, stopping=True) is None
    assert [ev["kind"] for ev in night.journal.events("t", EventKind.REQUEUED)] == [EventKind.REQUEUED]


def test_a_stale_winner_is_discarded_and_its_change_goes_on_rebased(night):
    lc = Lifecycle(night)
    base = kept_baseline(lc)
    a, b = propose(lc, ACTIVATION="gelu"), propose(lc, USE_NORM=True)  # both on the baseline
    req, _ = drive(lc, a.id, {base.id: BASE, a.id: BASE - 0.02})
    lc.finish(a, req)  # a is the incumbent now; b ran on the baseline: stale
    req, _ = drive(lc, b.id, {base.id: BASE, b.id: BASE - 0.01})
    assert isinstance(req, Finish) and req.status == ExpStatus.DISCARDED and req.carry_over
    assert req.reason.startswith(f"stale: #{a.id} was kept while it ran; against its parent #{base.id}")
    lc.finish(b, req)
    h = night.journal.experiments("t")
    new = next(x for x in h if x.params.get(REBASED_KEY) == b.id)
    assert new.parent_id == a.id and f"goes on as #{new.id}" in night.journal.experiment(b.id).reason


def test_a_candidate_waits_for_the_baseline_and_for_busy_yardsticks(night):
    lc = Lifecycle(night)
    base = night.add_baseline()
    record(night, Want(base.id), BASE)
    e = propose(lc, ACTIVATION="gelu")
    record(night, Want(e.id), BASE - 0.02)
    h, e = night.journal.experiments("t"), night.journal.experiment(e.id)
    assert isinstance(lc.next(e, lc.look(h)), Wait)  # the baseline is not kept yet
    req, _ = drive(lc, base.id, {base.id: BASE})
    lc.finish(base, req)
    h = night.journal.experiments("t")
    assert isinstance(lc.next(e, lc.look(h, busy={base.id})), Wait)  # its yardstick has runs queued
    assert not isinstance(lc.next(e, lc.look(h)), Wait)


@pytest.mark.parametrize("verdict", ["out", "promoted", "audit"])
def test_the_screen_is_a_step_of_the_lifecycle(tmp_path, verdict):
    c = open_night(tmp_path, screen=True, screening=ScreenSettings(audit_every=1 if verdict == "audit" else 0))
    n = c.night
    try:
        lc = Lifecycle(n)
        base = kept_baseline(lc)
        e = propose(lc, LEARNING_RATE=1.0)
        view = lc.look(n.journal.experiments("t"))
        first = lc.next(e, view)  # the baseline's short seeds and the candidate's screen run
        assert view.screening and {(w.exp_id, w.screen) for w in first.wants} == {(base.id, True), (e.id, True)}
        worse = 0.0 if verdict == "promoted" else 0.05
        for w in first.wants:
            record(n, w, BASE + SHORT + (worse if w.exp_id == e.id else 0))
        e = n.journal.experiment(e.id)
        req = lc.next(e, lc.look(n.journal.experiments("t")))
        decided = [json.loads(ev["message"]) for ev in n.journal.events("t", EventKind.SCREEN)]
        assert [d["verdict"] for d in decided] == [verdict]
        if verdict == "out":
            assert isinstance(req, Finish) and req.status == ExpStatus.SCREENED
            assert req.reason.startswith("screened out at 25 % of the budget")
            lc.finish(e, req)
            assert n.journal.experiment(e.id).status == ExpStatus.SCREENED and e.runs == []
        else:
            # Promoted (or audited): its first full run is next. A resumed night, reading the
            # screen's journaled decision, asks the same and decides nothing twice.
            resumed = Lifecycle(n)
            again = resumed.next(e, resumed.look(n.journal.experiments("t")))
            assert req == again == Runs((Want(e.id, priority=1),))
            assert len(n.journal.events("t", EventKind.SCREEN)) == 1
    finally:
        close(c)


def test_a_keep_resumed_after_a_kill_between_its_re_scores_and_its_decision(night):
    lc = Lifecycle(night)
    base = kept_baseline(lc)
    e = propose(lc, ACTIVATION="gelu")
    req, _ = drive(lc, e.id, {base.id: BASE, e.id: BASE - 0.02})
    # Killed here: the re-scores journaled, the keep not. A new controller's lifecycle keeps it.
    resumed = Lifecycle(night)
    again = resumed.next(night.journal.experiment(e.id), resumed.look(night.journal.experiments("t")))
    assert again == req and again.status == ExpStatus.KEPT
    resumed.finish(night.journal.experiment(e.id), again)
    # Past --hours a winner's re-scores do not start: it waits for the resumed night.
    f = propose(resumed, USE_NORM=True)
    req, asked = drive(resumed, f.id, {e.id: BASE - 0.02, f.id: BASE - 0.04}, stopped=True)
    assert isinstance(req, Wait) and "past --hours" in req.why and "Rescore" not in asked


def test_a_candidate_editing_a_protected_file_is_rejected_at_its_begin(night):
    lc = Lifecycle(night)
    kept_baseline(lc)
    h = night.journal.experiments("t")
    exp = night.add_proposal(night.context(h), Proposal("edits the metric", {"evaluate.py": "print(0)\n"}))
    assert lc.begin(exp, h) is None
    done = night.journal.experiment(exp.id)
    assert done.status == ExpStatus.REJECTED and "non-editable" in done.reason
    assert done.commit_sha is None  # nothing of it was committed
