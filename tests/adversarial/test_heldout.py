"""Attacks on the validation data, through the real loop on the toy task (fast): a candidate
that reads the held-out slice the harness built, one that reads a `task.watch` file, one that
looks in the sandbox; and the keep rule on the held-out score (`fits-validation`).

The toy's held-out slice here is a protected script of the test's (`heldout_toy.py`, the same
build/score protocol as `python -m overnight.heldout`; overnight.testing.attacks.heldout_toy):
its "held-out loss" is the toy's true loss with the activation fixed, so a change of ACTIVATION
gains on val_loss and not on the held-out slice, as a fit of the validation tokens would."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from overnight.records import ExpStatus
from overnight.report.status import status_dict
from overnight.run import heldout_store, sandbox
from overnight.run.watch import available as inotify_unavailable
from overnight.testing.attacks import HONEST, TOY_HEAD, heldout_toy, night, night_allowing_keeps

pytestmark = [
    pytest.mark.skipif(bool(inotify_unavailable()), reason=f"no inotify: {inotify_unavailable()}"),
    pytest.mark.usefixtures("unsandboxed"),  # the watch, which holds without a sandbox (its test sets one)
]

READS_STORE = """import glob, os
run = os.path.dirname(os.environ["OVERNIGHT_RESULT"])
# A snooping candidate: it knows the harness keeps things in the repository's .overnight/.
found = glob.glob(os.path.join(run, "../../../heldout/*.bin"))
print("FOUND", found)
for p in found:
    open(p, "rb").read()
"""


READS_A_LINK = READS_STORE.replace(
    '    open(p, "rb").read()',
    '    os.link(p, os.path.join(run, "innocent.bin"))  # another name, outside .overnight/heldout/\n'
    '    open(os.path.join(run, "innocent.bin"), "rb").read()',
)


@pytest.mark.parametrize("attack", [READS_STORE, READS_A_LINK], ids=["directly", "through-a-hard-link"])
def test_reads_the_heldout_file(toy_task, attack):
    """Finds the held-out slice under .overnight/ and reads it (or a hard link it made to it):
    discarded, `reads-heldout`."""
    root = heldout_toy(toy_task)
    c, h = night(root, attack + TOY_HEAD + "train_and_evaluate(dict(constants, LEARNING_RATE=0.005))\n")
    e = h[-1]
    assert e.status == ExpStatus.DISCARDED, (e.status, e.reason)
    assert "held-out data was opened while it ran" in e.reason and "heldout/" in e.reason, e.reason
    assert READS_A_LINK != READS_STORE
    assert c.journal.events("t", "reads-heldout")
    assert e.runs[-1].status == "reads-heldout"
    reads = status_dict(c.journal, "t", c.task.metric)["heldout"]["reads"]
    assert len(reads) == 1 and reads[0].startswith(f"#{e.id} ")
    # The harness's own reads (build, the scores through stdin) never tripped the watch.
    assert h[0].status == ExpStatus.KEPT and h[0].runs[0].status == "ok"
    assert list((root / ".overnight" / "heldout").glob("*.bin"))


def test_reads_a_watched_file(toy_task, tmp_path):
    """`task.watch`: a file of the task's own that no run may open."""
    secret = tmp_path / "secret-labels.txt"
    secret.write_text("answers")
    root = toy_task(task_extra=f'watch     = ["{secret}"]\n')
    body = f'open("{secret}").read()\n' + TOY_HEAD + HONEST
    c, h = night(root, body)
    e = h[-1]
    assert e.status == ExpStatus.DISCARDED and f"opened {secret}" in e.reason, (e.status, e.reason)
    assert c.journal.events("t", "reads-heldout")


def test_keep_needs_the_gain_on_the_heldout_slice(toy_task):
    """A learning-rate change gains on both: kept. An activation change on top gains 0.02 more
    on val_loss and nothing more on the held-out slice (gap over max_gap 0.01): discarded,
    `fits-validation`, whether judged against the kept #2 or (stale) against the baseline."""
    root = heldout_toy(toy_task)
    honest = TOY_HEAD.replace("LEARNING_RATE = 0.01", "LEARNING_RATE = 0.005") + HONEST
    fitted = honest.replace('ACTIVATION = "relu"', 'ACTIVATION = "gelu"')
    c, h = night_allowing_keeps(root, honest, fitted)
    assert h[1].status == ExpStatus.KEPT, (h[1].status, h[1].reason)
    assert h[2].status == ExpStatus.DISCARDED and "fits the validation data" in h[2].reason, (h[2].status, h[2].reason)
    # Against #1 (stale: gains 0.0464 and 0.0264) or #2 (0.02 and 0): 0.02 short, allowed 0.01.
    assert (
        "held-out gain +0.0264 (needed +0.0364" in h[2].reason or "held-out gain +0.0000 (needed +0.0100" in h[2].reason
    ), h[2].reason
    assert [ev["message"].split(":")[0] for ev in c.journal.events("t", "fits-validation")] == [f"#{h[2].id}"]
    heldout_events = c.journal.events("t", "heldout")
    # #2's figures, whichever keep's check was journaled first (their re-scores run side by side).
    mine = [ev["message"] for ev in heldout_events if ev["message"].startswith(f"#{h[1].id}:")]
    assert len(heldout_events) == 2 and len(mine) == 1 and "held-out gain +0.0264 (needed +0.0164" in mine[0], mine
    kept_run = h[1].runs[-1]
    assert json.loads((Path(kept_run.log_path).parent / "heldout.json").read_text())["heldout_val_loss"] > 1.0
    assert kept_run.summary["heldout_val_loss"] > 1.0  # journaled with the re-score (runs.summary)


@pytest.mark.parametrize("tool", ["bwrap", "unshare"])
def test_reads_the_heldout_file_in_the_sandbox(toy_task, tool, monkeypatch):
    """In the sandbox the held-out folder is an empty tmpfs: the attack finds nothing to read,
    so nothing trips the watch either; the run is judged normally (not kept: no gain)."""
    monkeypatch.setenv("OVERNIGHT_SANDBOX", tool)
    if sandbox.tool() != tool:
        pytest.skip(f"{tool} unavailable here: {sandbox.unavailable()}")
    root = heldout_toy(toy_task, toml_extra="\n[limits]\nsandbox = true\n")
    c, h = night(root, READS_STORE + TOY_HEAD + HONEST)
    e = h[-1]
    assert e.status == ExpStatus.DISCARDED and not c.journal.events("t", "reads-heldout"), (e.status, e.reason)
    log = Path(e.runs[-1].log_path).read_text()
    assert "FOUND []" in log and f"[overnight] sandbox: {tool}" in log, log[:2000]
    assert e.runs[-1].summary.get("sandbox") == tool
    assert heldout_store.watched_paths(c.task)  # the store exists outside the sandbox


def test_the_watch_sees_a_hard_link_but_not_a_copy(tmp_path):
    """What inotify can and cannot tell (the README says so): the same inode is seen under any
    name; a copy made before the watch started is another file."""
    from overnight.run.watch import Watch

    (tmp_path / "store").mkdir()
    secret = tmp_path / "store" / "h.bin"
    secret.write_bytes(b"x" * 100)
    link, copy = tmp_path / "link.bin", tmp_path / "copy.bin"
    link.hardlink_to(secret)
    copy.write_bytes(secret.read_bytes())
    with Watch([tmp_path / "store"]) as w:
        subprocess.run(["cat", str(copy)], check=True, capture_output=True)
        assert w.poll() == []
    with Watch([secret]) as w:  # a file watch follows the inode
        subprocess.run(["cat", str(link)], check=True, capture_output=True)
    assert any(hit.startswith("opened") for hit in w.hits), w.hits


def test_the_baseline_is_heldout_scored_only_where_a_keep_pairs_with_it(toy_task):
    """The baseline is kept without re-scores (it is the reference). A keep's held-out check
    pairs seed for seed: the baseline's runs with the winner's seeds are re-scored then (and
    so held-out scored), once; its other seeds never are."""
    from overnight.judges.noise import NoiseSettings
    from overnight.night.config import RunConfig
    from overnight.night.controller import Controller
    from overnight.testing.attacks import Attacks

    root = heldout_toy(toy_task, noise="0.002")
    honest = TOY_HEAD.replace("LEARNING_RATE = 0.01", "LEARNING_RATE = 0.005") + HONEST
    c = Controller(
        root, RunConfig(tag="t", proposer="random", judge="noise", experiments=2, noise=NoiseSettings(baseline_runs=4))
    )
    c.proposer = Attacks([honest])
    c.run()
    base, win = c.journal.experiments("t")
    assert win.status == ExpStatus.KEPT, (win.status, win.reason)
    seeds = {r.seed for r in win.runs if r.status == "ok"}
    paired = {r.seed for r in base.runs if r.rescored is not None}
    assert paired == seeds & {r.seed for r in base.runs} and len(paired) < len(base.runs)
    for r in base.runs:
        assert (r.summary.get("heldout_val_loss") is not None) == (r.seed in paired)
    assert f"paired on {len(paired)} seed(s)" in c.journal.events("t", "heldout")[0]["message"]
    c.journal.close()
