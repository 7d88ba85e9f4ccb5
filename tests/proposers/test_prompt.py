"""The prompt: what it carries, and that it stays under a fixed cap however long the night."""

from __future__ import annotations

from pathlib import Path

from overnight import gitops
from overnight.journal import Journal
from overnight.proposers import Context
from overnight.proposers.prompt import PROMPT_CAP, build, size
from overnight.records import ExpStatus, RunResult, RunStatus
from overnight.task_load import load_task
from overnight.tasks import write_task
from overnight.testing.toy import write_toy


def fill(journal: Journal, tag: str, base: str, n: int, tail_lines: int = 200) -> None:
    """A night of n experiments: every 10th kept, every 7th crashed with a long log, others discarded."""
    value, last_kept = 1.5, 1
    for i in range(2, n + 1):
        desc = f"experiment {i}: " + "a long and winding description of a change " * 8
        eid = journal.add_experiment(tag, last_kept, base, desc, "llm", {}, {})
        run = journal.start_run(eid, 0)
        if i % 7 == 0:
            tail = "\n".join(f"Traceback line {k} of experiment {i}" for k in range(tail_lines))
            journal.finish_run(run, RunResult(RunStatus.CRASH, exit_code=1, log_tail=tail, error="exit 1"))
            journal.set_status(eid, ExpStatus.CRASHED, "exit 1\n" + tail)
        elif i % 10 == 0:
            value -= 0.001
            journal.finish_run(run, RunResult(RunStatus.OK, value=value))
            journal.set_status(eid, ExpStatus.KEPT, "better", value)
            last_kept = eid
        else:
            journal.finish_run(run, RunResult(RunStatus.OK, value=value + 0.01))
            journal.set_status(eid, ExpStatus.DISCARDED, "worse", value + 0.01)


def night_context(root: Path, n: int, notes: int = 0) -> Context:
    task = load_task(root)
    base = gitops.head(root)
    journal = Journal(root / ".overnight" / "journal.db")
    journal.add_tag("t", base, {})
    bid = journal.add_experiment("t", None, base, "baseline", "baseline", {}, {})
    journal.set_commit(bid, base, "")
    for seed in range(3):  # repeated baseline runs: the noise is known
        run = journal.start_run(bid, seed)
        journal.finish_run(run, RunResult(RunStatus.OK, value=1.5 + 0.001 * seed))
    journal.set_status(bid, ExpStatus.KEPT, "baseline", 1.501)
    fill(journal, "t", base, n)
    history = journal.experiments("t")
    inc = max((e for e in history if e.status == ExpStatus.KEPT), key=lambda e: (e.decided, e.id))
    files = gitops.read_files(root, base, task.editable)
    texts = [f"note {i}: " + "please try something about the warmdown " * 5 for i in range(notes)]
    return Context(task, "t", root / ".overnight", files, inc, files, history, notes=texts)


def nanogpt(tmp_path: Path) -> Path:
    root = tmp_path / "nanogpt"
    root.mkdir(parents=True)
    write_task("nanogpt", root, "cpu", None)
    gitops.init_repo(root, "init")
    return root


def test_prompt_is_capped_however_long_the_night(tmp_path):
    first = size(*build(night_context(nanogpt(tmp_path), 1)))
    long_ctx = night_context(nanogpt(tmp_path / "b"), 500, notes=200)
    system, user = build(long_ctx)
    late = size(system, user)
    print(f"\nnanogpt prompt: {first} characters at experiment 1, {late} at experiment 500 (cap {PROMPT_CAP})")
    assert first <= late <= PROMPT_CAP
    assert "#500 " in user and "more not shown" in user and "earlier kept changes not shown" in user
    assert "Traceback line 199 of experiment 497" in user and "characters omitted" in user
    assert "note 199:" in user and "note 0:" not in user  # the newest notes win
    assert "def forward" in user  # the whole editable file is there


def test_prompt_sections(tmp_path):
    ctx = night_context(write_toy(tmp_path / "toy"), 12, notes=1)
    system, user = build(ctx)
    assert "<<<<<<< SEARCH" in system
    assert "# Research program\n\n# Toy task" in user
    assert "Metric: val_loss (minimize: lower is better)" in user
    assert "Noise: repeated runs of the same code differ by a standard deviation of 0.001" in user
    assert "Kept changes" in user and "#10 kept" in user and "#12 discarded" in user and "(+0.009 vs #1)" in user
    assert "#7 (crashed)" in user and "note 0:" in user
    assert 'ACTIVATION = "relu"' in user
    hybrid = build(ctx, "hybrid")[1]
    assert "tuned separately (Optuna)" in hybrid
    system, agent = build(ctx, "agent", description_file="/tmp/d.txt")
    assert system == "" and "/tmp/d.txt" in agent and "ACTIVATION" not in agent
