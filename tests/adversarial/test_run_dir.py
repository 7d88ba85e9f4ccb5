"""Attacks through what a run leaves behind (issue 12, items 1, 4-6): a printed line that
claims the harness's re-score, links and hard links that a later write of the harness would
follow into the journal or a protected file, a directory where a record file goes, a FIFO or a
sparse giant in place of the result file. Each runs through the real loop on the toy task and
must end discarded or invalid with a reason, the journal and the protected files intact
(overnight.testing.attacks.check_intact), and the controller neither hung nor bloated."""

from __future__ import annotations

import hashlib
import threading
import time

import psutil
import pytest

from overnight.records import ExpStatus
from overnight.run.sandbox import unavailable as sandbox_unavailable
from overnight.testing.attacks import GREAT, HONEST, TOY_HEAD, heldout_toy, night, night_allowing_keeps

# the run-directory checks, which hold without a sandbox (its own test sets limits.sandbox = true)
pytestmark = pytest.mark.usefixtures("unsandboxed")

FAKE = f"""import json, os
json.dump({{"val_loss": {GREAT}, "training_seconds": 0.1}}, open(os.environ["OVERNIGHT_RESULT"], "w"))
run = os.path.dirname(os.environ["OVERNIGHT_RESULT"])
state = os.path.join(run, "..", "..", "..")  # .overnight/ of the task repository
repo = os.path.join(state, "..")
"""


@pytest.mark.parametrize("key", ["rescored", "heldout_val_loss"])
def test_a_printed_line_never_stands_for_the_harness(toy_task, key):
    """The candidate writes a great result itself and prints the key the harness keeps its own
    re-score (or held-out score) under: it is still re-scored, and discarded as a mismatch."""
    root = heldout_toy(toy_task)
    c, h = night(root, TOY_HEAD + FAKE + f'print("---")\nprint("{key}: {GREAT}")\n')
    e = h[-1]
    assert e.status == ExpStatus.DISCARDED, (e.status, e.reason)
    assert "re-scored by protected code in a fresh process" in e.reason, e.reason
    assert [r.status for r in e.runs] == ["mismatch"]
    assert e.runs[0].summary["printed"][key] == GREAT  # kept for display, under "printed" only
    assert e.runs[0].rescored is None


def test_no_keep_without_the_harness_heldout_score(toy_task, monkeypatch):
    """A held-out score the harness did not run (here: the score's run stubbed out, as a
    candidate that dodged it would leave things) refuses the keep instead of 'not checked'."""
    from overnight.run import scoring

    root = heldout_toy(toy_task)
    honest = TOY_HEAD.replace("LEARNING_RATE = 0.01", "LEARNING_RATE = 0.005") + HONEST
    real = scoring.heldout_score
    calls = []

    def dodged(task, req, env, res, stop, data=None):
        calls.append(req.run_dir.name)
        if req.run_dir.name.startswith("2-"):  # the baseline's is real, the candidate's never happens
            return None
        return real(task, req, env, res, stop, data)

    monkeypatch.setattr(scoring, "heldout_score", dodged)
    c, h = night(root, honest)
    e = h[-1]
    assert sorted(name.split("-")[0] for name in calls) == ["1", "2"]  # the yardstick's run, paired at the keep
    assert e.status == ExpStatus.DISCARDED and "no held-out score by the harness" in e.reason, (e.status, e.reason)


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


TRAPS = {
    "symlink-to-journal": 'os.symlink(os.path.abspath(os.path.join(state, "journal.db")), os.path.join(run, "rescore.txt"))\n',  # noqa: E501
    "symlink-to-protected": 'os.symlink(os.path.abspath(os.path.join(repo, "evaluate.py")), os.path.join(run, "heldout.txt"))\n',  # noqa: E501
    "hardlink-to-journal": 'os.link(os.path.join(state, "journal.db"), os.path.join(run, "rescore.txt"))\n',
    "hardlink-result-to-protected": (
        'os.unlink(os.environ["OVERNIGHT_RESULT"])\n'
        'os.link(os.path.join(repo, "evaluate.py"), os.environ["OVERNIGHT_RESULT"])\n'
    ),
    "directory-for-rescore-json": 'os.mkdir(os.path.join(run, "rescore.json"))\n',
    "symlink-log": (
        'os.unlink(os.path.join(run, "log.txt"))\n'
        'os.symlink(os.path.abspath(os.path.join(state, "journal.db")), os.path.join(run, "log.txt"))\n'
    ),
}


@pytest.mark.parametrize("trap", list(TRAPS), ids=list(TRAPS))
def test_traps_in_the_run_directory(toy_task, trap):
    """A better-looking fake result (so the harness would re-score it) plus a trap at a name
    the harness writes or reads: invalid with the reason, the journal and evaluate.py whole."""
    root = heldout_toy(toy_task)
    before = _digest(root / "evaluate.py")
    c, h = night(root, TOY_HEAD + FAKE + TRAPS[trap])
    e = h[-1]
    assert e.status in (ExpStatus.INVALID, ExpStatus.DISCARDED), (e.status, e.reason)
    assert e.runs[0].status == "invalid" and "traps in its run directory" in e.reason, e.reason
    assert _digest(root / "evaluate.py") == before
    assert c.journal.experiments("t")[0].status == ExpStatus.KEPT  # readable, intact (check_intact too)


def _rss_watch(stop: threading.Event, peak: list) -> None:
    me = psutil.Process()
    while not stop.wait(0.05):
        peak[0] = max(peak[0], me.memory_info().rss)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "attack",
    [
        'os.mkfifo(os.environ["OVERNIGHT_RESULT"])\n',
        # A FIFO with a writer the run leaves behind: the reaper kills it, and the reader must not wait.
        'os.mkfifo(os.environ["OVERNIGHT_RESULT"])\n'
        'if os.fork() == 0:\n    os.setsid()\n    f = open(os.environ["OVERNIGHT_RESULT"], "w")\n    import time; time.sleep(600)\n',  # noqa: E501
        'open(os.environ["OVERNIGHT_RESULT"], "w").truncate(2 << 30)\n',
        'os.mkdir(os.environ["OVERNIGHT_RESULT"])\n',
    ],
    ids=["fifo", "fifo-with-a-writer", "sparse-2GiB", "directory"],
)
def test_a_result_file_that_is_not_a_file(toy_task, attack):
    root = toy_task()
    stop, peak = threading.Event(), [0]
    watcher = threading.Thread(target=_rss_watch, args=(stop, peak), daemon=True)
    watcher.start()
    try:
        _, h = night(root, TOY_HEAD + "import os\n" + attack)
    finally:
        stop.set()
    e = h[-1]
    assert e.status == ExpStatus.INVALID, (e.status, e.reason)
    assert "result file refused" in e.reason or "traps in its run directory" in e.reason, e.reason
    assert peak[0] < 1 << 30, peak[0]  # the 2 GiB file was never read into memory


@pytest.mark.parametrize(
    "attack",
    [
        'print("---")\nprint("grad_norm: nan")\nprint("best: -inf")\nprint("steps: 1" + "0" * 400)\n',
        'import json, os\njson.dump({"val_loss": 1.0, "training_seconds": 10 ** 400}, open(os.environ["OVERNIGHT_RESULT"], "w"))\n',  # noqa: E501
        'import os\nopen(os.environ["OVERNIGHT_RESULT"], "w").write("{\\"val_loss\\": 1" + "0" * 400 + "}")\n',
        'import os\nopen(os.environ["OVERNIGHT_RESULT"], "w").write("[" * 300000)\n',
    ],
    ids=["printed-nan-inf-huge", "huge-training-seconds", "huge-metric", "deep-nesting"],
)
def test_odd_numbers_and_nesting_are_data_not_a_crash(toy_task, attack):
    """What the second adversarial pass found: a printed `nan` made the stored summary invalid
    JSON (every later json_patch, and so every resume, failed); a 400-digit integer or a result
    nested 300,000 deep raised out of the runner. Each is now a decided experiment."""
    root = toy_task()
    if "print" not in attack:
        _, h = night(root, TOY_HEAD + attack)
        assert h[-1].status in (ExpStatus.INVALID, ExpStatus.DISCARDED), (h[-1].status, h[-1].reason)
        return
    honest = TOY_HEAD.replace("LEARNING_RATE = 0.01", "LEARNING_RATE = 0.005") + HONEST
    _, h = night_allowing_keeps(root, honest + attack)  # an honest gain that prints odd numbers
    e = h[-1]
    assert e.status == ExpStatus.KEPT, (e.status, e.reason)  # its re-score was journaled (json_patch)
    assert e.runs[0].summary["printed"]["grad_norm"] == "nan"


ESCAPE = """import os, signal, sys, time
if os.fork() == 0:  # a detached process with no marker in its environment
    os.setsid()
    if os.fork() == 0:
        os.execve("/bin/sleep", ["sleep", "987.654"], {})
    os._exit(0)
time.sleep(0.3)
pid = os.getppid()  # then up the parents to the run's reaper, and kill it
while pid > 1:
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read()
        ppid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except OSError:
        break
    if b"reaper.py" in cmd:
        os.kill(pid, signal.SIGKILL)
        break
    pid = ppid
"""


@pytest.mark.skipif(bool(sandbox_unavailable()), reason="no sandbox here")
def test_a_detached_process_that_kills_its_reaper_dies_with_the_sandboxed_run(toy_task):
    """A candidate that detaches a process with a cleared environment, then kills its own
    reaper, escapes both sweeps without a sandbox (the README says so). In the sandbox the run
    has its own PID namespace: it cannot see the reaper, and whatever it started dies with it."""
    root = toy_task(task_extra="", toml_extra="\n[limits]\nsandbox = true\n")
    _, h = night(root, TOY_HEAD + ESCAPE + HONEST)
    time.sleep(0.5)
    left = [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", "987.654"]]
    for p in left:
        p.kill()
    assert not left, "a process of the run outlived it"


def test_a_report_shaded_within_the_rescore_tolerance_wins_nothing(toy_task):
    """The baseline's own constants, reporting its exact loss times (1 - 9e-7): inside the
    default rescore_tolerance (1e-6), so the re-score agrees, and greedy on a noise-free toy saw
    a gain. The judged value is now the re-scored one: equal to the baseline's, not kept."""
    root = toy_task()
    shaded = (
        TOY_HEAD
        + """# nothing changed but this comment
import json, os
from evaluate import noisy_loss

v = noisy_loss(constants, int(os.environ["OVERNIGHT_SEED"]))
json.dump({"val_loss": v * (1 - 9e-7), "training_seconds": 0.1}, open(os.environ["OVERNIGHT_RESULT"], "w"))
"""
    )
    c, h = night(root, shaded)
    e = h[-1]
    assert e.status == ExpStatus.DISCARDED, (e.status, e.reason)
    assert e.runs[0].rescored == e.runs[0].value == h[0].runs[0].value
