"""The fault run: a night on the toy task whose controller is SIGKILLed at random points.

    python bench/faults.py [--experiments 50] [--kills 5] [--seed 0] [--slots 1] [--sleep budget]

The controller (`overnight run`, a real process) is killed with SIGKILL at random moments
`--kills` times and restarted with the same command each time, then left to finish. Checked
at the end (an AssertionError says what broke):

- the journal has every experiment exactly once: ids 1..N, all decided, none proposed twice
  (distinct Optuna trials), and every experiment has exactly one finished run (the greedy
  judge: one run each), the runs cut by a kill journaled `interrupted` and run again;
- the branch is the last kept commit, and its history is exactly the kept changes in order;
- results.tsv has one row per experiment, in order, agreeing with the journal (commit,
  keep/discard/crash, value);
- no worktree and no training process is left behind.

Runs train for `--sleep` seconds ("budget": the toy's whole 1 s budget), and half the kills
(drawn) wait until a run is alive, so kills land on live runs (`kills_during_run`: a run or a
re-score was alive at the kill; a re-score is not journaled as a run). Survivors are counted: the
processes of a run (they carry OVERNIGHT_RUN_MARK and a result path in the repository) alive
0.5 s after a kill (`survivors_after_kill`: the reaper should have taken them with the
controller), those still alive when the resumed controller's first run is (`survivors_beside_resume`:
the resume should have killed them first), and at the end (`survivors_at_end`). Target: zero.

Kill moments are drawn uniformly over each controller's life (start-up, proposing,
committing, running, deciding, writing results.tsv), so over many seeds every phase is hit.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from overnight import gitops
from overnight.journal import Journal
from overnight.records import ExpStatus
from overnight.results_tsv import TSV_STATUS
from overnight.testing.procs import CLI
from overnight.testing.toy import make_toy


def command(root: Path, n: int, slots: int) -> list[str]:
    return [
        *CLI,
        "run",
        str(root),
        "--experiments",
        str(n),
        "--quiet",
        "--tag",
        "faults",
        "--proposer",
        "optuna",
        "--judge",
        "greedy",
        "--seed",
        "1",
        "--slots",
        str(slots),
    ]


def fault_night(
    n: int = 50,
    kills: int = 5,
    seed: int = 0,
    slots: int = 1,
    sleep: str = "budget",
    root: Path | None = None,
    log=print,
) -> dict:
    """Run the night with `kills` SIGKILLs, check it, return figures."""
    rng = random.Random(seed)
    root = root or make_toy(env={"TOY_SLEEP": sleep})
    t0 = time.monotonic()
    killed = starts = during_run = after_kill = beside = 0
    left: set[int] = set()  # the runs that outlived the last killed controller
    while True:
        starts += 1
        out = tempfile.TemporaryFile()
        proc = subprocess.Popen(command(root, n, slots), stdout=out, stderr=subprocess.STDOUT)
        at, wait_for_run = rng.uniform(0.3, 4.0), rng.random() < 0.5
        began, first_run, was_killed = time.monotonic(), not left, False
        while proc.poll() is None:
            runs = _run_processes(root)
            mine = runs - left
            if not first_run and mine:  # the resumed night's first run: are the old ones still there?
                beside += len(left & runs)
                first_run = True
            waited = time.monotonic() - began
            if killed < kills and waited >= at and (mine or not wait_for_run or waited > at + 30):
                proc.kill()  # SIGKILL: no cleanup of any kind
                proc.wait()
                killed, was_killed = killed + 1, True
                during_run += bool(mine)
                time.sleep(0.5)
                left = _run_processes(root)
                after_kill += len(left)
                log(
                    f"kill {killed}/{kills} at start {starts} ({'a run alive' if mine else 'no run alive'}, "
                    f"{len(left)} run process(es) alive 0.5 s later)"
                )
                break
            time.sleep(0.05)
        if was_killed:
            out.close()
            continue
        if not first_run:
            beside += len(left & _run_processes(root))
        out.seek(0)
        text = out.read().decode(errors="replace")
        out.close()
        if proc.returncode != 0:
            raise AssertionError(f"controller failed (exit {proc.returncode}):\n{text}")
        break  # the night is over (before all the kills, if it was quick)
    wall = time.monotonic() - t0
    at_end = len(_run_processes(root))
    figures = check(root, n)
    figures.update(
        kills=killed,
        kills_during_run=during_run,
        survivors_after_kill=after_kill,
        survivors_beside_resume=beside,
        survivors_at_end=at_end,
        starts=starts,
        wall_seconds=round(wall, 1),
        root=str(root),
    )
    return figures


def _run_processes(root: Path) -> set[int]:
    """Live processes of a run of the night in `root`: a run's environment holds OVERNIGHT_RUN_MARK
    and an OVERNIGHT_RESULT inside the repository (a reaper, its shell, train.py, the re-score)."""
    mark, result = b"OVERNIGHT_RUN_MARK=", b"OVERNIGHT_RESULT=" + str(root).encode()
    out = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    env = f.read().split(b"\0")
            except OSError:
                continue
            if any(v.startswith(mark) for v in env) and any(v.startswith(result) for v in env):
                out.add(int(name))
    return out


def check(root: Path, n: int) -> dict:
    j = Journal(root / ".overnight" / "journal.db")
    try:
        h = j.experiments("faults")
    finally:
        j.close()
    assert [e.id for e in h] == list(range(1, n + 1)), [e.id for e in h]
    assert all(e.status.final for e in h), [(e.id, e.status) for e in h if not e.status.final]
    trials = [e.params.get("_trial") for e in h[1:]]
    assert len(set(trials)) == len(trials), "an experiment was proposed twice"
    interrupted = 0
    for e in h:
        done = [r for r in e.runs if r.status != "interrupted"]
        interrupted += len(e.runs) - len(done)
        assert len(done) == 1, (e.id, [r.status for r in e.runs])  # greedy: one run each
    # The branch: the last kept commit, its history the kept changes in order.
    kept = sorted((e for e in h if e.status == ExpStatus.KEPT), key=lambda e: (e.decided, e.id))
    assert gitops.rev_parse(root, "overnight/faults") == kept[-1].commit_sha
    on_branch = gitops.git(root, "rev-list", "overnight/faults", f"^{h[0].commit_sha}").split()
    assert on_branch == [e.commit_sha for e in reversed(kept) if e.parent_id is not None]
    # results.tsv agrees with the journal, row for row.
    rows = (root / ".overnight" / "faults" / "results.tsv").read_text().splitlines()[1:]
    assert len(rows) == n, len(rows)
    for e, row in zip(h, rows):
        commit, value, _, status, _ = row.split("\t")
        assert commit == e.commit_sha[:7] and status == TSV_STATUS.get(e.status, "crash"), (e.id, row)
        if status != "crash":
            assert abs(float(value) - e.value) < 1e-6, (e.id, row, e.value)
    # Nothing left behind.
    assert len(gitops.git(root, "worktree", "list").splitlines()) == 1
    leftovers = [p for p in _processes_under(root)]
    assert not leftovers, leftovers
    return {"experiments": len(h), "kept": len(kept), "interrupted_runs": interrupted}


def _processes_under(root: Path) -> list[int]:
    """Live processes whose working directory is inside the task repository."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.readlink(f"/proc/{name}/cwd").startswith(str(root)):
                    out.append(int(name))
            except OSError:
                pass
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiments", type=int, default=50)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--slots", type=int, default=1)
    ap.add_argument("--sleep", default="budget", help='seconds each run trains, or "budget" (the toy\'s 1 s)')
    args = ap.parse_args()
    print(fault_night(args.experiments, args.kills, args.seed, args.slots, args.sleep))


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()
