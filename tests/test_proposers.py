"""Contract tests every proposer passes (as optuna's testing/pytest_samplers.py does for samplers),
then what is particular to Optuna. Contexts come from a real toy repo and a real journal."""

from __future__ import annotations

import ast
import math

import optuna
import pytest
from conftest import Night, write_toy
from optuna.trial import TrialState

from overnight import knobs
from overnight.journal import ExpStatus
from overnight.proposers import make_proposer
from overnight.proposers.optuna import TRIAL_KEY

PROPOSERS = ["optuna", "random"]


def night(tmp_path, name="toy", seed=0) -> Night:
    return Night(write_toy(tmp_path / name), seed=seed)


def file_values(new_text: str) -> dict:
    return {n: c.value for n, c in knobs.find_constants(new_text).items()}


def in_range(k: knobs.Knob, v) -> bool:
    if k.kind == "cat":
        return v in k.choices
    if k.kind == "pow2":
        return v > 0 and v & (v - 1) == 0 and k.low <= math.log2(v) <= k.high
    # Files hold 4 significant digits, so a value at a bound may round a hair past it.
    slack = 5e-4 * max(abs(k.low), abs(k.high))
    return k.low - slack <= v <= k.high + slack


@pytest.mark.parametrize("name", PROPOSERS)
def test_contract_proposals_are_valid(tmp_path, name):
    n = night(tmp_path)
    p = make_proposer(name)
    assert p.name == name
    space = {k.name: k for k in knobs.discover(n.files, n.task.knobs)}
    assert "ACTIVATION" in space and space["ACTIVATION"].choices == ("relu", "gelu", "silu")
    ctx = n.ctx()
    p.observe(ctx.history[0], ctx)
    changed = set()
    for i in range(6):
        ctx = n.ctx()
        prop = p.propose(ctx)
        assert prop.description.strip()
        assert set(prop.edits) <= set(n.task.editable)
        for path, text in prop.edits.items():
            ast.parse(text)  # compiles
            assert text != n.files[path]
            before, after = file_values(n.files[path]), file_values(text)
            assert set(before) == set(after)  # no constant lost or invented
            for kname, k in space.items():
                value = after[k.constant] if k.index is None else after[k.constant][k.index]
                assert in_range(k, value), (kname, value)
                if value != k.default:
                    changed.add(kname)
            # Everything but the constants' values is untouched.
            strip = lambda s: [ln.split("=")[0] if ln[:1].isupper() else ln for ln in s.splitlines()]
            assert strip(text) == strip(n.files[path])
        assert set(prop.params) - {TRIAL_KEY} <= set(space)
        p.observe(n.record(prop, value=1.2 + 0.01 * i), n.ctx())
    assert len(changed) >= 3  # it searches, rather than re-proposing the baseline
    p.close()


@pytest.mark.parametrize("name", PROPOSERS)
def test_contract_deterministic_for_a_seed(tmp_path, name):
    def sequence(dirname, seed):
        n = night(tmp_path, dirname, seed=seed)
        p = make_proposer(name)
        out = []
        for _ in range(3):
            prop = p.propose(n.ctx())
            out.append(prop.edits)
            p.observe(n.record(prop), n.ctx())
        p.close()
        return out

    first = sequence("a", seed=7)
    assert sequence("b", seed=7) == first
    assert sequence("c", seed=8) != first


@pytest.mark.parametrize("name", PROPOSERS)
def test_contract_observe_is_idempotent(tmp_path, name):
    """Observing the same experiment twice (a resumed controller replays history) must not
    change what comes next."""

    def next_after(dirname, times):
        n = night(tmp_path, dirname, seed=3)
        p = make_proposer(name)
        for _ in range(2):
            exp = n.record(p.propose(n.ctx()))
            for _ in range(times):
                p.observe(exp, n.ctx())
        for _ in range(times):
            p.observe(n.journal.experiment(1), n.ctx())
        prop = p.propose(n.ctx())
        p.close()
        return prop.edits

    assert next_after("once", 1) == next_after("twice", 2)


@pytest.mark.parametrize("name", PROPOSERS)
def test_contract_resumed_proposer_carries_on(tmp_path, name):
    """A fresh proposer object (a restarted controller) on the same state works."""
    n = night(tmp_path)
    p = make_proposer(name)
    n.record(p.propose(n.ctx()))
    p.close()
    q = make_proposer(name)
    for e in n.journal.experiments("t"):
        q.observe(e, n.ctx())
    prop = q.propose(n.ctx())
    assert prop.edits and set(prop.edits) <= {"train.py"}


def test_no_knobs_is_a_clear_error(task_repo):
    from overnight.errors import OvernightError

    root = task_repo("print('no constants here')\n")
    n = Night(root)
    for name in PROPOSERS:
        with pytest.raises(OvernightError, match="no tunable"):
            make_proposer(name).propose(n.ctx())


def test_unknown_proposer():
    from overnight.errors import OvernightError

    with pytest.raises(OvernightError, match="unknown proposer"):
        make_proposer("genius")


# --- Optuna specifics ----------------------------------------------------------------------------


def load(n: Night) -> optuna.Study:
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
    p = make_proposer("optuna")
    a, b = p.propose(n.ctx()), p.propose(n.ctx())  # two slots, no result in between
    assert a.params[TRIAL_KEY] != b.params[TRIAL_KEY]
    assert {k: v for k, v in a.params.items() if k != TRIAL_KEY} != {
        k: v for k, v in b.params.items() if k != TRIAL_KEY
    }
    assert a.edits != b.edits
    assert [t.state for t in load(n).trials] == [TrialState.RUNNING, TrialState.RUNNING]


def test_optuna_tells_values_and_failures(tmp_path):
    n = night(tmp_path)
    p = make_proposer("optuna")
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
    p = make_proposer("optuna")
    journaled = p.propose(n.ctx())
    n.journal.add_experiment("t", 1, n.base, journaled.description, "optuna", journaled.params, journaled.edits)
    lost = p.propose(n.ctx())  # never journaled: the controller died here
    p.close()
    q = make_proposer("optuna")
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
    n = Night(root)
    make_proposer("optuna").propose(n.ctx())
    assert load(n).direction == optuna.study.StudyDirection.MAXIMIZE
