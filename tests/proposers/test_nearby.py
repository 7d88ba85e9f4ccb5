"""The knob search that starts at the incumbent (proposers/nearby.py, `--knob-search local`): its
first moves stay next to the current best, one constant at a time. Real toy repo, journal, Optuna."""

from __future__ import annotations

import optuna

from overnight import knobs
from overnight.proposers import ProposerOptions, make_proposer
from overnight.proposers.nearby import MOVE_KEY
from overnight.proposers.optuna import TRIAL_KEY
from overnight.records import ExpStatus
from overnight.testing.nights import ToyNight
from overnight.testing.toy import write_toy

LOCAL = ProposerOptions(knob_search="local")
# The toy's 7 knobs: coarse moves 2 each (USE_NORM 1, ACTIVATION 2), fine moves for its 3 floats.
TOY_MOVES = 13 + 6


def values(text: str) -> dict:
    return {n: c.value for n, c in knobs.find_constants(text).items()}


def moved(n: ToyNight, proposal) -> dict:
    before, after = values(n.incumbent_files["train.py"]), values(proposal.edits["train.py"])
    return {k: (before[k], after[k]) for k in before if before[k] != after[k]}


def test_the_first_moves_change_one_constant_next_to_the_incumbent_rates_first(tmp_path):
    n = ToyNight(write_toy(tmp_path / "toy"))
    p = make_proposer("optuna", LOCAL)
    changes = []
    for _ in range(4):
        prop = p.propose(n.ctx())
        change = moved(n, prop)
        assert len(change) == 1 and MOVE_KEY in prop.params and TRIAL_KEY not in prop.params, prop
        changes.append(change)
        p.observe(n.record(prop, value=1.3), n.ctx())
    # LEARNING_RATE (0.01) is the toy's rate: doubled and halved first, then the next knob.
    assert changes[:2] == [{"LEARNING_RATE": (0.01, 0.02)}, {"LEARNING_RATE": (0.01, 0.005)}]
    assert all("LEARNING_RATE" not in c for c in changes[2:])


def test_a_kept_move_is_followed_and_a_step_back_is_not_proposed(tmp_path):
    n = ToyNight(write_toy(tmp_path / "toy"))
    p = make_proposer("optuna", LOCAL)
    first = p.propose(n.ctx())
    assert moved(n, first) == {"LEARNING_RATE": (0.01, 0.02)}
    n.keep(first.edits, 1.1, first.params)  # it paid: the incumbent moves
    nxt = p.propose(n.ctx())
    assert moved(n, nxt) == {"LEARNING_RATE": (0.02, 0.04)}  # the same direction again
    seen = []
    for _ in range(TOY_MOVES):
        prop = p.propose(n.ctx())
        if TRIAL_KEY in prop.params:
            break
        seen.append(moved(n, prop))
        p.observe(n.record(prop, value=1.3), n.ctx())
    # Halving back to 0.01 would be the baseline's files: measured already, never proposed.
    assert {"LEARNING_RATE": (0.02, 0.01)} not in seen


def test_two_slots_and_a_resumed_night_never_repeat_a_move(tmp_path):
    n = ToyNight(write_toy(tmp_path / "toy"))
    p = make_proposer("optuna", LOCAL)
    a, b = p.propose(n.ctx()), p.propose(n.ctx())  # two slots: nothing journaled in between
    assert a.edits != b.edits
    n.record(a), n.record(b)
    again = make_proposer("optuna", LOCAL).propose(n.ctx())  # a new controller: what was tried is in the journal
    assert again.edits not in (a.edits, b.edits)


def test_when_every_move_was_tried_tpe_takes_over_knowing_them(tmp_path):
    n = ToyNight(write_toy(tmp_path / "toy"))
    p = make_proposer("optuna", LOCAL)
    p.observe(n.journal.experiment(1), n.ctx())  # the baseline: the study's first trial
    for i in range(TOY_MOVES):
        prop = p.propose(n.ctx())
        assert MOVE_KEY in prop.params and len(moved(n, prop)) == 1, (i, prop.description)
        p.observe(n.record(prop, value=1.3 + 0.001 * i), n.ctx())
    tpe = p.propose(n.ctx())
    assert TRIAL_KEY in tpe.params and MOVE_KEY not in tpe.params
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{n.state / 'optuna.db'}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 1 + TOY_MOVES  # the baseline and every local result
    assert sorted(t.value for t in done if "experiment" in t.user_attrs)[0] == 1.3


def test_global_search_the_default_is_tpe_from_the_start(tmp_path):
    n = ToyNight(write_toy(tmp_path / "toy"))
    assert ProposerOptions().knob_search == "global"  # the night benchmark's choice (options.py)
    prop = make_proposer("optuna").propose(n.ctx())
    assert TRIAL_KEY in prop.params and MOVE_KEY not in prop.params
    n.record(prop, ExpStatus.DISCARDED)
