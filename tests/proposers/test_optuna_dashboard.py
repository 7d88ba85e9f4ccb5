"""The README's claim that `optuna-dashboard sqlite:///.overnight/optuna.db` opens the night's
study, kept true: the study is loaded through Optuna's own API from that file, and its trials
carry the journal's values and parameters."""

from __future__ import annotations

import math

import optuna

from overnight import gitops
from overnight.knobs import discover
from overnight.night.config import RunConfig
from overnight.night.controller import Controller
from overnight.proposers.optuna import TRIAL_KEY, from_param
from overnight.records import ExpStatus
from overnight.task_load import load_task
from overnight.testing.toy import write_toy


def test_the_study_on_disk_matches_the_journal(tmp_path):
    root = write_toy(tmp_path / "toy")
    c = Controller(root, RunConfig(tag="t", proposer="optuna", judge="greedy", experiments=8))
    c.run()
    history = c.journal.experiments("t")
    c.journal.close()

    summaries = optuna.study.get_all_study_summaries(f"sqlite:///{root}/.overnight/optuna.db")
    assert [s.study_name for s in summaries] == ["t"]  # one study per tag, named after it
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{root}/.overnight/optuna.db")
    files = gitops.read_files(root, history[0].base_commit, ("train.py",))
    knobs = {k.name: k for k in discover(files, load_task(root).knobs)}
    baseline = [t for t in study.trials if t.user_attrs.get("baseline")]
    assert len(baseline) == 1 and baseline[0].value == history[0].value
    asked = [e for e in history if TRIAL_KEY in e.params]
    assert len(asked) == len(history) - 1 >= 6
    for exp in asked:
        trial = study.trials[exp.params[TRIAL_KEY]]
        if exp.status.failed or exp.value is None:
            assert trial.state == optuna.trial.TrialState.FAIL
            continue
        assert exp.status in (ExpStatus.KEPT, ExpStatus.DISCARDED)
        assert trial.state == optuna.trial.TrialState.COMPLETE and math.isclose(trial.value, exp.value)
        # Every constant the experiment set is the trial's parameter, as the dashboard shows it.
        shown = {name: from_param(knobs[name], v) for name, v in trial.params.items()}
        changed = {k: v for k, v in exp.params.items() if k != TRIAL_KEY}
        assert changed and all(shown[name] == value for name, value in changed.items()), (changed, shown)
