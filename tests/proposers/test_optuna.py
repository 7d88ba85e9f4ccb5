"""What is particular to the optuna proposer (the contract every proposer passes is in
test_contract.py). Contexts come from a real toy repo and a real journal."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from overnight import knobs
from overnight.proposers import ProposerOptions, make_proposer
from overnight.proposers.optuna import TRIAL_KEY
from overnight.records import ExpStatus
from overnight.testing.nights import ToyNight
from overnight.testing.toy import write_toy


def night(tmp_path, name="toy", seed=0) -> ToyNight:
    return ToyNight(write_toy(tmp_path / name), seed=seed)


def file_values(new_text: str) -> dict:
    return {n: c.value for n, c in knobs.find_constants(new_text).items()}


def tpe():
    """TPE from the first proposal (`--knob-search global`): these tests are about its trials."""
    return make_proposer("optuna", ProposerOptions(knob_search="global"))


def load(n: ToyNight) -> optuna.Study:
    return optuna.load_study(study_name=n.tag, storage=f"sqlite:///{n.state / 'optuna.db'}")


def test_optuna_study_on_disk_with_baseline_trial(tmp_path):
    n = night(tmp_path)
    p = make_proposer("optuna")
    base = n.journal.experiment(1)
    p.observe(base, n.ctx())
    p.observe(base, n.ctx())  # twice: still one baseline trial
    assert (n.state / "optuna.db").is_file()
    trials = load(n).trials
    assert len(trials) == 1 and trials[0].user_attrs["baseline"] and trials[0].value == 1.2
    assert trials[0].params["WIDTH"] == 6  # pow2 knobs are searched by exponent (64 = 2**6)
    assert trials[0].params["ACTIVATION"] == "relu"


def test_optuna_parallel_asks_are_distinct(tmp_path):
    n = night(tmp_path)
    p = tpe()
    a, b = p.propose(n.ctx()), p.propose(n.ctx())  # two slots, no result in between
    assert a.params[TRIAL_KEY] != b.params[TRIAL_KEY]
    assert {k: v for k, v in a.params.items() if k != TRIAL_KEY} != {
        k: v for k, v in b.params.items() if k != TRIAL_KEY
    }
    assert a.edits != b.edits
    assert [t.state for t in load(n).trials] == [TrialState.RUNNING, TrialState.RUNNING]


def test_optuna_tells_values_and_failures(tmp_path):
    n = night(tmp_path)
    p = tpe()
    good, bad = p.propose(n.ctx()), p.propose(n.ctx())
    p.observe(n.record(good, ExpStatus.DISCARDED, 1.25), n.ctx())
    p.observe(n.record(bad, ExpStatus.CRASHED, None), n.ctx())
    trials = {t.number: t for t in load(n).trials}
    assert trials[good.params[TRIAL_KEY]].state == TrialState.COMPLETE
    assert trials[good.params[TRIAL_KEY]].value == 1.25
    assert trials[bad.params[TRIAL_KEY]].state == TrialState.FAIL
    # The file holds what Optuna chose (rounded to 4 significant digits for floats).
    values = file_values(good.edits["train.py"])
    for name, param in trials[good.params[TRIAL_KEY]].params.items():
        if name == "WIDTH":
            assert values[name] == 2**param
        elif isinstance(param, float):
            assert values[name] == pytest.approx(param, rel=1e-3)
        else:
            assert values[name] == param


def test_optuna_orphan_trials_fail_on_restart(tmp_path):
    """A trial asked by a controller that died before journaling it must not stay RUNNING."""
    n = night(tmp_path)
    p = tpe()
    journaled = p.propose(n.ctx())
    n.journal.add_experiment("t", 1, n.base, journaled.description, "optuna", journaled.params, journaled.edits)
    lost = p.propose(n.ctx())  # never journaled: the controller died here
    p.close()
    q = tpe()
    q.propose(n.ctx())
    states = {t.number: t.state for t in load(n).trials}
    assert states[lost.params[TRIAL_KEY]] == TrialState.FAIL
    assert states[journaled.params[TRIAL_KEY]] == TrialState.RUNNING  # still in flight, still owned


def test_optuna_maximize_direction(task_repo):
    root = task_repo(
        "LR = 0.01\n",
        toml="""\
        [task]
        command = "{python} train.py"
        editable = ["train.py"]
        budget = 1
        [metric]
        name = "acc"
        goal = "maximize"
        """,
    )
    n = ToyNight(root)
    make_proposer("optuna").propose(n.ctx())
    assert load(n).direction == optuna.study.StudyDirection.MAXIMIZE
