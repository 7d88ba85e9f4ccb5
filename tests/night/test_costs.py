"""The steps clock's costs through a real night: each commit's first run measures its seconds per
token against its parent's, the journal keeps it, and every later run of the commit is given it.

A task of its own whose train.py stands in for nanogpt's protected budget: it reports the cost
it was given (OVERNIGHT_COST), else its parent's (OVERNIGHT_COST_REF) when its own COST is within
15 % of it, else its own COST, and prints what it was given. Two local slots, so the baseline's
seeds and a candidate's confirmations could run side by side.
"""

from __future__ import annotations

import json
from pathlib import Path

from overnight.judges.noise import NoiseSettings
from overnight.night.config import RunConfig
from overnight.night.controller import Controller
from overnight.records import ExpStatus
from overnight.run import sandbox
from overnight.testing.nights import Scripted, set_knobs
from overnight.testing.toy import make_task_repo

TRAIN = """
import json, os, time
from evaluate import report
COST = 0.001  # seconds per token this version takes
SCORE = 1.0
known, ref = os.environ.get("OVERNIGHT_COST"), os.environ.get("OVERNIGHT_COST_REF")
print(json.dumps([known, ref]))
if known:
    cost = float(known)
elif ref and abs(COST / float(ref) - 1) <= 0.15:
    cost = float(ref)
else:
    cost = COST
time.sleep(0.3)
seed = int(os.environ["OVERNIGHT_SEED"])
report(score=SCORE + 0.002 * (seed % 3), clock="steps", cost=cost, cost_ref=float(ref) if ref else None)
"""

TOML = """\
[task]
command = "{python} train.py"
editable = ["train.py"]
protected = ["evaluate.py"]
budget = 1
clock = "steps"

[metric]
name = "score"
"""


def given(run) -> list:
    lines = Path(run.log_path).read_text().splitlines()
    return json.loads(next(line for line in lines if not line.startswith(sandbox.NOTE)))  # past the sandbox's note


def test_a_commits_cost_is_measured_once_and_given_to_its_later_runs(tmp_path, cli):
    root = make_task_repo(tmp_path / "task", TRAIN, TOML)
    steps = [set_knobs(COST=0.0011, SCORE=0.9), set_knobs(COST=0.002, SCORE=0.8)]
    noise = NoiseSettings(baseline_runs=4, remeasure_every=0)
    c = Controller(
        root,
        RunConfig(tag="t", experiments=3, slots=2, screen=False, noise=noise, seed_secret=""),  # seed % 3 differs
        proposer=Scripted(*steps),
    )
    c.run()
    base, near, far = c.journal.experiments("t")[:3]  # (two slots: far ran beside near, on the baseline)
    assert base.status == near.status == ExpStatus.KEPT, [(e.id, e.reason) for e in (base, near)]
    assert far.parent_id == base.id and len(far.runs) >= 2, far.reason
    # The baseline measured its own (no parent); a 10 % dearer child took its parent's exactly; a
    # twice as dear one was charged its own, measured against its parent's.
    assert (base.cost, base.cost_ref) == (0.001, None)
    assert (near.cost, near.cost_ref) == (0.001, 0.001)
    assert (far.cost, far.cost_ref) == (0.002, 0.001)
    for exp, ref in ((base, None), (near, "0.001"), (far, "0.001")):
        runs = sorted([r for r in exp.runs if r.status == "ok"], key=lambda r: r.id)
        assert len(runs) >= 2, (exp.id, len(runs))
        first, *later = runs
        assert given(first) == [None, ref], exp.id
        assert all(given(r) == [repr(exp.cost), ref] for r in later), (exp.id, [given(r) for r in later])
        # With two slots, no later run started before the first had measured the cost.
        assert all(r.started >= first.ended for r in later), exp.id
    # `overnight show` says what a run of it is charged, and each run's CPU seconds.
    res = cli("show", near.id, root)
    assert res.exit_code == 0, res.output
    assert "cost: 1000.00 us per token (its parent's: 1000.00)" in res.output and ", cpu " in res.output
