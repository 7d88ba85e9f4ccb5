"""One test per attack: each candidate attacks, runs through the real loop on the toy task,
and must end discarded, crashed, invalid, oom, timeout or rejected with a reason, with no
harness crash and no lost data (see overnight.testing.attacks.check_intact). The README's table lists them."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import psutil
import pytest

from overnight.records import ExpStatus
from overnight.run.sandbox import unavailable as sandbox_unavailable
from overnight.testing.attacks import GREAT, HONEST, TOY_HEAD, night

# the defences that hold without a sandbox (its own test sets limits.sandbox = true)
pytestmark = pytest.mark.usefixtures("unsandboxed")


def one(history, status, needle):
    e = history[-1]
    assert e.status == status, (e.status, e.reason)
    assert needle in e.reason, e.reason
    return e


def test_prints_a_fake_metric(toy_task):
    root = toy_task()
    _, h = night(root, TOY_HEAD + f'print("---")\nprint("val_loss: {GREAT}")\n')
    one(h, ExpStatus.INVALID, "no result file")


def test_writes_a_fake_result_file_and_exits_0(toy_task):
    root = toy_task()
    body = (
        TOY_HEAD
        + f"""import json, os
json.dump({{"val_loss": {GREAT}, "training_seconds": 0.1}}, open(os.environ["OVERNIGHT_RESULT"], "w"))
"""
    )
    c, h = night(root, body)
    e = one(h, ExpStatus.DISCARDED, "re-scored by protected code in a fresh process")
    assert c.journal.events("t", "rescore-mismatch")
    assert [r.status for r in e.runs] == ["mismatch"]  # the fake looked better: re-scored before the keep


def test_writes_a_fake_result_file_then_crashes(toy_task):
    root = toy_task()
    body = (
        TOY_HEAD
        + f"""import json, os, sys
json.dump({{"val_loss": {GREAT}}}, open(os.environ["OVERNIGHT_RESULT"], "w"))
sys.exit(1)
"""
    )
    _, h = night(root, body)
    one(h, ExpStatus.CRASHED, "exit code 1")


def test_overwrites_the_result_after_the_protected_code(toy_task):
    root = toy_task()
    body = (
        TOY_HEAD
        + HONEST
        + f"""import json, os
json.dump({{"val_loss": {GREAT}, "training_seconds": 0.1}}, open(os.environ["OVERNIGHT_RESULT"], "w"))
"""
    )
    c, h = night(root, body)
    e = one(h, ExpStatus.DISCARDED, "re-scored")
    assert [r.status for r in e.runs] == ["mismatch"] and c.journal.events("t", "rescore-mismatch")


def test_monkeypatches_the_evaluation_at_import(toy_task):
    root = toy_task()
    body = "import evaluate\nevaluate.true_loss = lambda c: 0.5\n" + TOY_HEAD + HONEST
    c, h = night(root, body)
    e = one(h, ExpStatus.DISCARDED, "re-scored")
    assert [r.status for r in e.runs] == ["mismatch"] and c.journal.events("t", "rescore-mismatch")


def test_proposes_edits_of_protected_files(toy_task):
    root = toy_task()
    cheat = (root / "evaluate.py").read_text().replace("return (BEST_LOSS", "return (0.5 * BEST_LOSS")
    _, h = night(
        root,
        {"evaluate.py": cheat},
        {"overnight.toml": "[task]\n"},
        {"train.py": TOY_HEAD + HONEST, ".overnight/journal.db": "garbage"},
    )
    assert [e.status for e in h[1:]] == [ExpStatus.REJECTED] * 3
    assert all("edits non-editable file(s)" in e.reason for e in h[1:])


def test_rewrites_the_protected_evaluation_while_it_runs(toy_task):
    root = toy_task()
    body = (
        """import re
src = open("evaluate.py").read()
open("evaluate.py", "w").write(src.replace("return (BEST_LOSS", "return (0.5 * BEST_LOSS"))
"""
        + TOY_HEAD
        + HONEST
    )
    _, h = night(root, body)
    one(h, ExpStatus.INVALID, "protected file(s) changed during the run: evaluate.py")


def test_edits_results_tsv(toy_task):
    """results.tsv is an export: rewritten from the journal at every decision."""
    root = toy_task()
    body = (
        TOY_HEAD
        + """import glob, os
for p in glob.glob(os.path.join(os.environ["OVERNIGHT_RESULT"], "../../../*/results.tsv")):
    open(p, "a").write("fffffff\\t0.100000\\t0.0\\tkeep\\tforged\\n")
"""
        + "train_and_evaluate(dict(constants, ACTIVATION='silu'))\n"
    )
    _, h = night(root, body)
    assert "forged" not in (root / ".overnight" / "t" / "results.tsv").read_text()


def test_trains_past_the_budget_by_wall_time(toy_task):
    """Trains before calling the protected code, so the reported training time is short:
    the harness's own clock catches it."""
    root = toy_task(toml_extra="\n[limits]\noverhead = 3\n")
    body = "import time\ntime.sleep(5)\n" + TOY_HEAD + "train_and_evaluate(dict(constants, ACTIVATION='gelu'))\n"
    c, h = night(root, body)
    e = one(h, ExpStatus.DISCARDED, "over budget: ran")
    assert e.runs[-1].value is not None  # it did report a (better) metric: discarded anyway
    assert c.journal.events("t", "over-budget")


def test_trains_past_the_budget_by_ignoring_it(toy_task):
    """Ignores OVERNIGHT_BUDGET: the protected code times the training and reports it."""
    root = toy_task(toml_extra="\n[limits]\noverhead = 3\n")
    body = (
        'import os\nos.environ["TOY_SLEEP"] = "2.5"\n'
        + TOY_HEAD
        + "train_and_evaluate(dict(constants, ACTIVATION='gelu'))\n"
    )
    _, h = night(root, body)
    one(h, ExpStatus.DISCARDED, "over budget: trained")


def test_forks_children_that_escape_the_process_group(toy_task, tmp_path):
    """One child calls setsid() after a double fork; another also clears its environment.
    Both must be dead when the run ends."""
    root = toy_task()
    pids = tmp_path / "pids"
    pids.mkdir()
    body = (
        f"""import os, sys, time
for clear in (False, True):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            open(os.path.join({str(pids)!r}, str(os.getpid())), "w").close()
            if clear:
                os.execve(sys.executable, [sys.executable, "-c", "import time; time.sleep(120)"], {{}})
            time.sleep(120)
        os._exit(0)
time.sleep(0.5)
"""
        + TOY_HEAD
        + HONEST
    )
    _, h = night(root, body)
    one(h, ExpStatus.DISCARDED, "")
    found = [int(p.name) for p in pids.iterdir()]
    assert len(found) == 2
    time.sleep(0.2)
    alive = [p for p in found if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not alive


def test_fills_memory(toy_task):
    root = toy_task(toml_extra="\n[limits]\nmemory_mb = 150\n")
    body = (
        """import time
hog = []
for _ in range(40):
    hog.append(bytearray(20 * 2**20))
    time.sleep(0.02)
"""
        + TOY_HEAD
        + HONEST
    )
    c, h = night(root, body)
    one(h, ExpStatus.OOM, "limits.memory_mb")
    rows = (root / ".overnight" / "t" / "results.tsv").read_text().splitlines()
    assert rows[-1].split("\t")[3] == "crash"


def test_fills_the_disk(toy_task):
    free_mb = shutil.disk_usage("/tmp").free / 2**20
    root = toy_task(toml_extra=f"\n[limits]\ndisk_reserve_mb = {free_mb - 100:.0f}\n")
    if shutil.disk_usage(root).free / 2**20 < free_mb - 50:
        pytest.skip("tmp_path is not on /tmp's filesystem")
    body = (
        """import time
with open("filler", "wb") as f:
    for _ in range(100):
        f.write(b"x" * 10 * 2**20)
        f.flush()
        time.sleep(0.03)
"""
        + TOY_HEAD
        + HONEST
    )
    _, h = night(root, body)
    one(h, ExpStatus.CRASHED, "limits.disk_reserve_mb")


def test_floods_the_log(toy_task):
    root = toy_task(toml_extra="\n[limits]\nlog_mb = 1\n")
    body = 'import sys\nfor _ in range(400):\n    sys.stdout.write("x" * 65536 + "\\n")\n' + TOY_HEAD + HONEST
    _, h = night(root, body)
    e = one(h, ExpStatus.DISCARDED, "")  # honest metric after the flood: judged like any other
    run = e.runs[-1]
    assert run.value is not None and run.summary["log_dropped_bytes"] > 20 * 2**20
    assert Path(run.log_path).stat().st_size < 1.1 * 2**20
    assert "val_loss:" in Path(run.log_path).read_text()  # the summary at the end survived


def test_sleeps_forever(toy_task):
    root = toy_task(timeout=3)
    body = "import time\ntime.sleep(3600)\n"
    _, h = night(root, body)
    one(h, ExpStatus.TIMEOUT, "hard timeout")


def test_exits_0_with_no_metric(toy_task):
    root = toy_task()
    _, h = night(root, "print('done')\n")
    one(h, ExpStatus.INVALID, "no result file")


def test_produces_nan(toy_task):
    root = toy_task()
    _, h = night(root, TOY_HEAD + "train_and_evaluate(dict(constants, WIDTH=float('nan')))\n")
    one(h, ExpStatus.INVALID, "not finite")


def test_moves_only_the_seed(tmp_path):
    """The "seed 42 -> 137" case on a toy variant whose train.py has a SEED constant that
    feeds the noise (the toy's noise draw depends on every constant; its true loss ignores
    SEED), under the default noise judge. A diff that only moves a seed is rejected before it
    runs (guards.py): with these very seeds the noise judge alone once kept #2 (its 6-run
    noise estimate came out at a third of the true sd). A candidate that also pins
    OVERNIGHT_SEED runs, and its identical replicates count as one observation."""
    from overnight import gitops
    from overnight.testing.toy import quiet_toy

    root = quiet_toy(tmp_path / "noise", noise="0.002")
    train = (root / "train.py").read_text().replace("USE_NORM = False", "USE_NORM = False\nSEED = 42  # random seed")
    (root / "train.py").write_text(train)
    gitops.git(root, "commit", "-qam", "SEED constant")
    seeds = (137, 7, 1234, 99, 2024)
    pinned = 'import os\nos.environ["OVERNIGHT_SEED"] = "0"\n' + train.replace("SEED = 42", "SEED = 5")
    c, h = night(root, *[train.replace("SEED = 42", f"SEED = {s}") for s in seeds], pinned, judge="noise")
    for e in h[1:-1]:
        assert e.status == ExpStatus.REJECTED and "moves only a random seed" in e.reason and not e.runs
    assert h[-1].status == ExpStatus.DISCARDED, (h[-1].status, h[-1].reason)


@pytest.mark.skipif(bool(sandbox_unavailable()), reason=f"sandbox unavailable: {sandbox_unavailable()}")
def test_writes_outside_its_worktree_in_the_sandbox(toy_task):
    """limits.sandbox: the journal, results.tsv, the repository's files and the network are
    out of reach; the run directory and the worktree are writable."""
    root = toy_task(toml_extra="\n[limits]\nsandbox = true\n")
    body = (
        """import json, os, socket
run = os.path.dirname(os.environ["OVERNIGHT_RESULT"])
targets = {"journal": os.path.join(run, "../../../journal.db"), "tsv": os.path.join(run, "../../results.tsv"),
           "protected": os.path.join(run, "../../../../evaluate.py"), "root": os.path.join(run, "../../../../new.txt")}
out = {}
for name, path in targets.items():
    try:
        with open(path, "ab") as f:
            f.write(b"tampered")
        out[name] = "written"
    except OSError as exc:
        out[name] = type(exc).__name__
try:
    socket.create_connection(("1.1.1.1", 80), timeout=2)
    out["net"] = "connected"
except OSError as exc:
    out["net"] = type(exc).__name__
open("scratch.txt", "w").write("ok")  # its worktree is writable
print("ATTEMPTS", json.dumps(out))
"""
        + TOY_HEAD
        + HONEST
    )
    before = {p: (root / p).read_bytes() for p in ("evaluate.py", "train.py", "overnight.toml")}
    _, h = night(root, body)
    e = one(h, ExpStatus.DISCARDED, "")
    line = next(row for row in Path(e.runs[-1].log_path).read_text().splitlines() if row.startswith("ATTEMPTS "))
    attempts = json.loads(line.split(" ", 1)[1])
    assert "written" not in attempts.values() and attempts["net"] != "connected", attempts
    assert {p: (root / p).read_bytes() for p in before} == before and not (root / "new.txt").exists()


def test_checkpoints_of_discarded_experiments_are_pruned(toy_task):
    root = toy_task()
    body = (
        TOY_HEAD
        + """import os
run = os.path.dirname(os.environ["OVERNIGHT_RESULT"])
open(os.path.join(run, "model.pt"), "wb").write(b"x" * 4096)
"""
        + HONEST
    )
    _, h = night(root, body)
    run_dir = Path(h[-1].runs[-1].log_path).parent
    # Not kept, so never re-scored either (the re-score runs only before a keep).
    assert sorted(p.name for p in run_dir.iterdir()) == ["log.txt", "result.json"]


def test_rewrites_the_journal_without_the_sandbox(toy_task):
    """Finds journal.db from its run directory and marks itself kept with a great value. The
    controller's tamper watch (SQLite data_version + a digest of the tag's rows) stops the
    night with one clear error naming the experiment; the journal opens whole."""
    import sqlite3

    from overnight.errors import OvernightError
    from overnight.night.config import RunConfig
    from overnight.night.controller import Controller
    from overnight.testing.attacks import Attacks

    root = toy_task()
    body = (
        TOY_HEAD
        + HONEST
        + """import os, sqlite3
run = os.path.dirname(os.environ["OVERNIGHT_RESULT"])
con = sqlite3.connect(os.path.join(run, "../../../journal.db"), isolation_level=None)
con.execute("UPDATE experiments SET status='kept', value=0.1 WHERE id=(SELECT max(id) FROM experiments)")
con.close()
"""
    )
    c = Controller(root, RunConfig(tag="t", proposer="random", judge="greedy", experiments=2))
    c.proposer = Attacks([body])
    with pytest.raises(OvernightError, match=r"changed by another process while #2 ran"):
        try:
            c.run()
        except OvernightError:
            raise
        else:  # say what the attack's run did, so that a miss can be told from a failed attack
            runs = [(e.id, e.status, r.status, r.error, r.log_tail) for e in c.journal.experiments("t") for r in e.runs]
            pytest.fail(f"the night ended without finding the rewrite: {runs}")
    assert c.journal.events("t", "journal-tampered")
    con = sqlite3.connect(root / ".overnight" / "journal.db")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()
