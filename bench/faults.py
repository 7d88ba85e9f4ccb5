"""The fault run: a night on the toy task whose controller is SIGKILLed at random points.

    python bench/faults.py [--experiments 50] [--kills 5] [--seed 0] [--slots 1]

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

Kill moments are drawn uniformly over each controller's life (start-up, proposing,
committing, running, deciding, writing results.tsv), so over many seeds every phase is hit.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _toy import make_toy  # noqa: E402

from overnight import gitops  # noqa: E402
from overnight.journal import TSV_STATUS, ExpStatus, Journal  # noqa: E402


def command(root: Path, n: int, slots: int) -> list[str]:
    return [sys.executable, "-m", "overnight", "run", str(root), "--experiments", str(n), "--quiet",
            "--tag", "faults", "--proposer", "optuna", "--judge", "greedy", "--seed", "1", "--slots", str(slots)]


def fault_night(n: int = 50, kills: int = 5, seed: int = 0, slots: int = 1, sleep: str = "0.1",
                root: Path | None = None, log=print) -> dict:
    """Run the night with `kills` SIGKILLs, check it, return figures."""
    rng = random.Random(seed)
    root = root or make_toy(env={"TOY_SLEEP": sleep})
    t0 = time.monotonic()
    killed = 0
    starts = 0
    while True:
        starts += 1
        proc = subprocess.Popen(command(root, n, slots), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            out, _ = proc.communicate(timeout=rng.uniform(0.3, 4.0) if killed < kills else 600)
        except subprocess.TimeoutExpired:
            proc.kill()  # SIGKILL: no cleanup of any kind
            proc.communicate()
            killed += 1
            log(f"kill {killed}/{kills} at start {starts}")
            continue
        if proc.returncode != 0:
            raise AssertionError(f"controller failed (exit {proc.returncode}):\n{out.decode(errors='replace')}")
        break  # the night is over (before all the kills, if it was quick)
    wall = time.monotonic() - t0
    figures = check(root, n)
    figures.update(kills=killed, starts=starts, wall_seconds=round(wall, 1), root=str(root))
    return figures


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
    args = ap.parse_args()
    print(fault_night(args.experiments, args.kills, args.seed, args.slots))


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()
