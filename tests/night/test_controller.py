"""The controller end to end on real task repositories: git, subprocesses, SQLite, Optuna."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import optuna
import psutil
import pytest

from overnight import gitops, knobs
from overnight.errors import OvernightError
from overnight.night.config import RunConfig
from overnight.night.controller import Controller
from overnight.night.tags import open_journal
from overnight.proposers import Proposal, Proposer
from overnight.records import ExpStatus
from overnight.testing.gitutil import check_git_consistent, git_out, user_state
from overnight.testing.nights import Scripted, set_knobs
from overnight.testing.procs import CLI
from overnight.testing.toy import write_toy


def edit(path, text, description="edit"):
    return lambda ctx: Proposal(description, {path: text}, {})


def controller(root, n, proposer="random", tag="t", judge="greedy", **kw):
    """The greedy judge (one run per candidate) keeps these tests about the loop itself."""
    return Controller(root, RunConfig(tag=tag, proposer=proposer, judge=judge, experiments=n, **kw))


def test_optuna_night_on_the_toy_task(toy_repo):
    before = user_state(toy_repo)
    c = controller(toy_repo, 6, proposer="optuna")
    c.run()
    history = c.journal.experiments("t")
    assert [e.id for e in history] == [1, 2, 3, 4, 5, 6]
    base = history[0]
    assert (base.parent_id, base.description, base.edits, base.proposer) == (None, "baseline", {}, "baseline")
    assert base.commit_sha == before["head"].strip() and base.status == ExpStatus.KEPT
    assert base.value == pytest.approx(base.runs[0].value) and base.value > 1.0
    for e in history[1:]:
        assert e.status in (ExpStatus.KEPT, ExpStatus.DISCARDED), (e.id, e.status, e.reason)
        assert len(e.runs) == 1 and e.runs[0].status == "ok"
        assert set(e.edits) == {"train.py"} and e.proposer == "optuna"
        parent = next(p for p in history if p.id == e.parent_id)
        assert parent.status == ExpStatus.KEPT and e.base_commit == parent.commit_sha
        assert gitops.changed_paths(toy_repo, e.base_commit, e.commit_sha) == ["train.py"]
        assert e.diff and "train.py" in e.diff
    check_git_consistent(toy_repo, "t", history)
    # Optuna's study is on disk, told about everything, with nothing left RUNNING.
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{toy_repo / '.overnight' / 'optuna.db'}")
    states = [t.state for t in study.trials]
    assert optuna.trial.TrialState.RUNNING not in states
    assert states.count(optuna.trial.TrialState.COMPLETE) == 6  # 5 candidates + the baseline
    tsv = (toy_repo / ".overnight" / "t" / "results.tsv").read_text().splitlines()
    assert len(tsv) == 7 and tsv[1].startswith(base.commit_sha[:7])
    assert user_state(toy_repo) == before


def test_keep_discard_and_branch(tmp_path):
    root = write_toy(tmp_path / "toy", env={"TOY_NOISE": "0"})
    c = controller(root, 4)
    c.proposer = Scripted(
        set_knobs(ACTIVATION="gelu"),  # better by 0.02
        set_knobs(LEARNING_RATE=1.0),  # much worse
        set_knobs(USE_NORM=True),
    )  # better by 0.01, on top of gelu
    c.run()
    h = {e.id: e for e in c.journal.experiments("t")}
    assert [h[i].status for i in (1, 2, 3, 4)] == [ExpStatus.KEPT, ExpStatus.KEPT, ExpStatus.DISCARDED, ExpStatus.KEPT]
    assert h[2].value == pytest.approx(h[1].value - 0.02)
    assert h[4].value == pytest.approx(h[2].value - 0.01)
    assert h[3].parent_id == 2 and h[4].parent_id == 2  # discarded #3 is not built upon
    assert 'ACTIVATION = "gelu"' in h[4].edits["train.py"]  # #4 carries #2's change
    check_git_consistent(root, "t", list(h.values()))
    # The discarded commit is kept reachable, but not on the branch.
    assert (
        subprocess.run(
            ["git", "-C", str(root), "merge-base", "--is-ancestor", h[3].commit_sha, "overnight/t"]
        ).returncode
        == 1
    )
    assert c.proposer.observed == [1, 2, 3, 4]
    assert git_out(root, "show", "overnight/t:train.py").count("USE_NORM = True") == 1


def test_proposal_outside_editable_files_is_rejected(toy_repo):
    before = user_state(toy_repo)
    c = controller(toy_repo, 5)
    c.proposer = Scripted(
        edit("evaluate.py", "BEST_LOSS = 0\n", "cheat on the evaluation"),
        edit("overnight.toml", "[task]\n", "rewrite the spec"),
        edit("../escape.py", "x = 1\n", "escape"),
        set_knobs(ACTIVATION="gelu"),
    )
    c.run()
    h = c.journal.experiments("t")
    assert [e.status for e in h] == [
        ExpStatus.KEPT,
        ExpStatus.REJECTED,
        ExpStatus.REJECTED,
        ExpStatus.REJECTED,
        ExpStatus.KEPT,
    ]
    for e, name in zip(h[1:4], ["evaluate.py", "overnight.toml", "escape.py"]):
        assert e.runs == [] and e.commit_sha is None
        assert "non-editable" in e.reason and name in e.reason
        assert gitops.rev_parse(toy_repo, f"refs/overnight/t/{e.id}") is None
    assert h[4].parent_id == 1
    assert not (toy_repo.parent / "escape.py").exists()
    assert user_state(toy_repo) == before
    tsv = (toy_repo / ".overnight" / "t" / "results.tsv").read_text()
    assert tsv.count("\tcrash\t") == 3


def test_commit_touching_protected_file_never_runs(toy_repo, tmp_path):
    """Defence in depth: a candidate commit made elsewhere (an agent, a hand-edited journal)
    that changes protected code is caught by the runner before anything executes."""
    controller(toy_repo, 1).run()
    marker = tmp_path / "ran"
    evaluate = (
        (toy_repo / "evaluate.py")
        .read_text()
        .replace(
            "def train_and_evaluate(constants):\n",
            f"def train_and_evaluate(constants):\n    open({str(marker)!r}, 'w').write('ran')\n",
        )
    )
    assert "ran" in evaluate
    base = gitops.head(toy_repo)
    cheat = gitops.make_commit(toy_repo, base, {"evaluate.py": evaluate}, "cheat")
    j = open_journal(toy_repo)
    eid = j.add_experiment("t", 1, base, "cheat", "agent", {}, {})
    j.set_commit(eid, cheat, gitops.diff(toy_repo, base, cheat))
    c = controller(toy_repo, 3)
    c.proposer = Scripted(set_knobs(ACTIVATION="gelu"))
    c.run()
    e = c.journal.experiment(eid)
    assert e.status == ExpStatus.INVALID and "evaluate.py" in e.reason
    assert e.value is None
    assert not marker.exists()
    assert c.journal.experiment(3).status == ExpStatus.KEPT  # the night went on
    check_git_consistent(toy_repo, "t", c.journal.experiments("t"))


def test_crashing_candidates_do_not_stop_the_loop(toy_repo):
    def crash(ctx):
        src = ctx.incumbent_files["train.py"]
        return Proposal("crash", {"train.py": src.replace("if __name__", "raise RuntimeError('kaput')\nif __name__")})

    def syntax_error(ctx):
        return Proposal("syntax", {"train.py": ctx.incumbent_files["train.py"] + "\ndef (:\n"})

    c = controller(toy_repo, 4)
    c.proposer = Scripted(crash, syntax_error, set_knobs(ACTIVATION="gelu"))
    c.run()
    h = c.journal.experiments("t")
    assert [e.status for e in h] == [ExpStatus.KEPT, ExpStatus.CRASHED, ExpStatus.CRASHED, ExpStatus.KEPT]
    assert "kaput" in h[1].reason and "exit code 1" in h[1].reason
    assert "SyntaxError" in h[2].reason
    assert h[3].parent_id == 1
    check_git_consistent(toy_repo, "t", h)


def test_baseline_crash_raises(task_repo):
    root = task_repo("raise SystemExit('the data is missing')\n")
    c = controller(root, 3)
    with pytest.raises(OvernightError, match="baseline"):
        c.run()
    h = c.journal.experiments("t")
    assert len(h) == 1 and h[0].status == ExpStatus.CRASHED
    assert (root / ".overnight" / "t" / "results.tsv").read_text().count("\tcrash\t") == 1


def test_baseline_without_metric_raises(task_repo):
    root = task_repo("print('forgot to report')\n")
    with pytest.raises(OvernightError, match="invalid"):
        controller(root, 2).run()


def test_uncommitted_changes_refused(toy_repo):
    (toy_repo / "train.py").write_text((toy_repo / "train.py").read_text() + "# wip\n")
    with pytest.raises(OvernightError, match="uncommitted changes in train.py"):
        controller(toy_repo, 2)


def test_unknown_branch_refused(toy_repo):
    gitops.update_ref(toy_repo, "refs/heads/overnight/t", gitops.head(toy_repo))
    with pytest.raises(OvernightError, match="overnight/t exists"):
        controller(toy_repo, 2)


def test_bad_tag_refused(toy_repo):
    with pytest.raises(OvernightError, match="tag"):
        controller(toy_repo, 2, tag="a/b")


def test_resume_continues_the_same_tag(toy_repo):
    controller(toy_repo, 3, proposer="optuna").run()
    c = controller(toy_repo, 5, proposer="optuna")
    c.run()
    h = c.journal.experiments("t")
    assert len(h) == 5 and sum(e.parent_id is None for e in h) == 1  # one baseline only
    assert len({e.edits["train.py"] for e in h[1:]}) == 4  # four different proposals, none repeated
    check_git_consistent(toy_repo, "t", h)


# --- real processes: kill -9 and Ctrl-C ----------------------------------------------------------


def _cmd(root, n, tag="night"):
    return [
        *CLI,
        "run",
        str(root),
        "--experiments",
        str(n),
        "--quiet",
        "--tag",
        tag,
        "--proposer",
        "optuna",
        "--judge",
        "greedy",
        "--seed",
        "1",
    ]


def _wait_running(proc, root: Path, min_id: int, timeout: float = 60) -> int:
    """Poll the journal (as another process would) until experiment >= min_id is running."""
    db = root / ".overnight" / "journal.db"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        if db.exists():
            con = sqlite3.connect(db, timeout=10)
            try:
                row = con.execute(
                    "SELECT e.id FROM experiments e JOIN runs r ON r.experiment_id = e.id"
                    " WHERE e.status='running' AND r.status='running' AND e.id >= ?",
                    (min_id,),
                ).fetchone()
            except sqlite3.OperationalError:  # schema not created yet
                row = None
            finally:
                con.close()
            if row:
                return row[0]
        time.sleep(0.05)
    raise AssertionError("no experiment started running")


def _training_processes(pid: int, timeout: float = 30) -> list[psutil.Process]:
    """The controller's descendants once the training command has started (the run is
    journaled as running a moment before the subprocess exists)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs = psutil.Process(pid).children(recursive=True)
        try:
            if any("train.py" in " ".join(p.cmdline()) for p in procs):
                return procs
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.02)
    raise AssertionError("the training command never started")


def _check_final(root: Path, n: int, tag: str, stopped: int) -> None:
    j = open_journal(root)
    h = j.experiments(tag)
    assert [e.id for e in h] == list(range(1, n + 1))
    assert all(e.status.final for e in h), [(e.id, e.status) for e in h]
    for e in h:
        expected = ["interrupted", "ok"] if e.id == stopped else ["ok"]
        assert [r.status for r in e.runs] == expected, (e.id, [r.status for r in e.runs])
    assert len({e.edits["train.py"] for e in h[1:]}) == n - 1  # a resumed search repeats nothing
    check_git_consistent(root, tag, h)
    study = optuna.load_study(study_name=tag, storage=f"sqlite:///{root / '.overnight' / 'optuna.db'}")
    assert not [t.number for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    assert len((root / ".overnight" / tag / "results.tsv").read_text().splitlines()) == n + 1
    j.close()


def test_resume_after_sigkill(tmp_path):
    root = write_toy(tmp_path / "toy", env={"TOY_SLEEP": "1"})
    before = user_state(root)
    proc = subprocess.Popen(_cmd(root, 8), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        victim = _wait_running(proc, root, min_id=3)
        orphans = _training_processes(proc.pid)
        proc.kill()  # SIGKILL: no cleanup of any kind
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    # The training run lives in its own session and outlives its controller; let it end.
    psutil.wait_procs(orphans, timeout=10)
    j = open_journal(root)
    assert j.experiment(victim).status == ExpStatus.RUNNING  # what the dead controller left
    j.close()
    again = subprocess.run(_cmd(root, 8), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming night: 1 interrupted run(s)" in again.stdout
    _check_final(root, 8, "night", stopped=victim)
    assert user_state(root) == before


def test_ctrl_c_stops_cleanly_and_resumes(tmp_path):
    root = write_toy(tmp_path / "toy", env={"TOY_SLEEP": "1"})
    proc = subprocess.Popen(_cmd(root, 4), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        victim = _wait_running(proc, root, min_id=2)
        children = _training_processes(proc.pid)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "stopped. resume with the same command" in out and "Traceback" not in out
    # The running training process was stopped with the controller, not left behind.
    gone, alive = psutil.wait_procs(children, timeout=5)
    assert not alive
    j = open_journal(root)
    e = j.experiment(victim)
    assert e.status == ExpStatus.PROPOSED and [r.status for r in e.runs] == ["interrupted"]
    # Nothing proposed after the stop; the one candidate asked for in reserve while the victim
    # trained (proposals overlap training) may be journaled, never run.
    h = j.experiments("night")
    assert len(h) in (victim, victim + 1)
    assert all(e.status == ExpStatus.PROPOSED and e.runs == [] for e in h[victim:])
    j.close()
    assert len(git_out(root, "worktree", "list").splitlines()) == 1
    again = subprocess.run(_cmd(root, 4), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    _check_final(root, 4, "night", stopped=victim)


class _NeedsResult(Proposer):
    """Like an LLM: proposes only once the baseline has a result."""

    name = "needs-result"

    def propose(self, ctx):
        src = ctx.incumbent_files["train.py"]
        return Proposal("gelu", {"train.py": knobs.rewrite(src, {"ACTIVATION": "gelu"})})


@pytest.mark.parametrize("proposer", ["random", "needs-result"])
def test_a_knob_search_proposes_while_the_baseline_trains(tmp_path, proposer):
    """The first proposal of optuna/random is made on the baseline's files while the baseline
    runs (one slot would otherwise idle for a whole proposal); a proposer that needs the
    baseline's result waits for it. Either way the candidate is judged against the baseline."""
    root = write_toy(tmp_path / "toy", env={"TOY_SLEEP": "1"})
    c = Controller(root, RunConfig(tag="t", proposer="random", judge="greedy", experiments=2))
    if proposer != "random":
        c.proposer = _NeedsResult()
    c.run()
    base, cand = c.journal.experiments("t")
    assert base.status == ExpStatus.KEPT and cand.parent_id == base.id and cand.status.final
    # One slot: the candidate trains once the baseline's run is over (its re-score may still run).
    assert len(cand.runs) == 1 and cand.runs[0].started >= max(r.ended for r in base.runs)
    if proposer == "random":
        assert cand.created < base.runs[0].ended
    else:
        assert cand.created > base.decided
