"""Never pay twice for the same idea (night/duplicates.py): real controller, git, SQLite, Optuna."""

from __future__ import annotations

import optuna

from overnight import gitops
from overnight.night.config import RunConfig
from overnight.night.controller import Controller
from overnight.proposers import Proposal, prompt
from overnight.proposers.optuna import TRIAL_KEY, OptunaProposer
from overnight.records import ExpStatus
from overnight.testing.gitutil import check_git_consistent
from overnight.testing.nights import Scripted, ToyNight, set_knobs
from overnight.testing.toy import write_toy


def controller(root, n, **kw):
    return Controller(root, RunConfig(tag="t", proposer="random", judge="greedy", experiments=n, **kw))


def test_a_model_stuck_in_a_loop_pays_for_its_idea_once(tmp_path):
    root = write_toy(tmp_path / "toy", env={"TOY_NOISE": "0"})
    c = controller(root, 6)
    c.proposer = Scripted(*[set_knobs(LEARNING_RATE=1.0)] * 5)  # worse: the parent stays the baseline
    c.run()
    h = c.journal.experiments("t")
    first, repeats = h[1], h[2:]
    assert first.status == ExpStatus.DISCARDED and len(first.runs) == 1
    assert [e.status for e in repeats] == [ExpStatus.DUPLICATE] * 4
    for e in repeats:
        assert e.runs == [] and e.value == first.value, (e.id, e.runs, e.value)
        assert e.reason.startswith(f"already tried as #{first.id}: discarded {first.value:.6g}")
        assert e.commit_sha != first.commit_sha  # its own commit (shown by `overnight show`) ...
        assert gitops_tree(root, e.commit_sha) == gitops_tree(root, first.commit_sha)  # ... of the same files
    assert sum(len(e.runs) for e in h) == len(h[0].runs) + 1  # the baseline's runs and one
    assert c.proposer.observed == [e.id for e in h]  # the proposer heard every verdict
    assert len(c.journal.events("t", "duplicate")) == 4
    tsv = (root / ".overnight" / "t" / "results.tsv").read_text().splitlines()
    assert len(tsv) == 1 + len(h) and all(line.split("\t")[3] == "discard" for line in tsv[3:])
    check_git_consistent(root, "t", h)


def test_a_change_that_changes_nothing_and_a_rounding_apart_are_duplicates(tmp_path):
    root = write_toy(tmp_path / "toy", env={"TOY_NOISE": "0"})
    c = controller(root, 4)
    c.proposer = Scripted(
        lambda ctx: Proposal("nothing", dict(ctx.incumbent_files), {}),  # the incumbent's own files
        set_knobs(LEARNING_RATE=0.0123456),
        set_knobs(LEARNING_RATE=0.01234567),  # written as 0.01235 both times (4 significant digits)
    )
    c.run()
    h = c.journal.experiments("t")
    assert h[1].status == ExpStatus.DUPLICATE and h[1].reason.startswith("already tried as #1: kept")
    assert h[1].value == h[0].value
    assert h[2].runs and h[3].status == ExpStatus.DUPLICATE and h[3].reason.startswith("already tried as #3")


def test_a_change_already_in_the_incumbent_is_a_duplicate_of_it(tmp_path):
    root = write_toy(tmp_path / "toy", env={"TOY_NOISE": "0"})
    c = controller(root, 4)
    c.proposer = Scripted(
        set_knobs(ACTIVATION="gelu"),  # better: kept, the parent moves
        set_knobs(USE_NORM=True),  # new files on the new incumbent: run (and kept)
        set_knobs(ACTIVATION="gelu"),  # the incumbent's own files now: a duplicate of the last keep
    )
    c.run()
    h = c.journal.experiments("t")
    assert [e.status for e in h[1:3]] == [ExpStatus.KEPT, ExpStatus.KEPT] and h[2].runs
    assert h[3].status == ExpStatus.DUPLICATE and h[3].reason.startswith(f"already tried as #{h[2].id}: kept")
    assert h[3].value == h[2].value and h[3].runs == []


def test_the_prompt_history_says_already_tried(tmp_path):
    night = ToyNight(write_toy(tmp_path / "toy"))
    original = night.record(Proposal("lr 1.0", {}, {}), ExpStatus.DISCARDED, 1.5)
    night.journal.add_experiment("t", 1, night.base, "lr 1.0 again", "p", {}, {})
    dup = night.journal.experiments("t")[-1]
    night.journal.set_status(dup.id, ExpStatus.DUPLICATE, f"already tried as #{original.id}: discarded 1.5", 1.5)
    text = prompt.history_section(night.ctx())
    assert f"#{dup.id} duplicate 1.5" in text and f"already tried as #{original.id}: discarded 1.5" in text


def test_optuna_is_told_a_duplicates_result(tmp_path):
    night = ToyNight(write_toy(tmp_path / "toy"))
    p = OptunaProposer(start="global")
    proposal = p.propose(night.ctx())
    dup = night.record(proposal, ExpStatus.DUPLICATE, 1.3, proposer="optuna")  # answered from the journal
    p.observe(dup, night.ctx())
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{night.state / 'optuna.db'}")
    trial = study.trials[proposal.params[TRIAL_KEY]]
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.value == 1.3


def gitops_tree(root, commit):
    return gitops.trees(root, [commit])[commit]


def test_a_discard_for_want_of_evidence_is_run_again_then_answered(tmp_path):
    """ "not confirmed in N runs" found the change not better, not worse: the same files proposed
    again are measured again, UNDECIDED_TRIES times in all; a futility discard answers at once."""
    from dataclasses import replace

    from overnight.judges.noise import UNDECIDED
    from overnight.night.duplicates import UNDECIDED_TRIES, find_original
    from overnight.testing.judges import experiment

    root = write_toy(tmp_path / "toy", env={"TOY_NOISE": "0"})
    base = gitops.head(root)
    (root / "note.txt").write_text("same files\n")
    gitops.git(root, "add", "note.txt")
    gitops.git(root, "commit", "-qm", "a")
    a = gitops.head(root)
    gitops.git(root, "commit", "-q", "--allow-empty", "-m", "b: same tree")
    b = gitops.head(root)
    baseline = replace(experiment(1, None, [1.0, 1.1], status=ExpStatus.KEPT), commit_sha=base)

    def tried(i, sha, reason):
        return replace(experiment(i, 1, [0.9], status=ExpStatus.DISCARDED), commit_sha=sha, reason=reason)

    cache: dict[str, str] = {}
    history = [baseline, tried(2, a, f"{UNDECIDED} 8 runs: gain ...")]
    new = replace(experiment(3, 1), commit_sha=b)
    assert find_original(root, new, [*history, new], cache) is None  # measured again
    history.append(tried(3, b, f"{UNDECIDED} 8 runs: gain ..."))
    assert UNDECIDED_TRIES == 2
    new = replace(experiment(4, 1), commit_sha=a)
    assert find_original(root, new, [*history, new], cache).id == 3  # twice undecided: the latest answers
    futile = [baseline, tried(2, a, "not confirmed: gain -0.1 ...")]
    assert find_original(root, new, [*futile, new], cache).id == 2
