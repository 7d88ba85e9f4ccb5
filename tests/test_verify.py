"""`overnight verify` and `overnight ablate` end to end on the toy task (real runs, git, SQLite).

The night: four kept changes, each a known true gain on the toy (noise sd 0.001):
  #2 ACTIVATION relu->gelu      0.020
  #3 USE_NORM False->True       0.010   (the line next to #2's: #2 no longer reverse-applies)
  #4 LEARNING_RATE 0.01->0.005  0.0265  (then superseded by #5)
  #5 LEARNING_RATE 0.005->0.002 0.0127
"""

from __future__ import annotations

import json
import math

import pytest

from overnight.errors import OvernightError
from overnight.judges.noise import NoiseSettings
from overnight.night.config import RunConfig
from overnight.night.controller import Controller
from overnight.records import ExpStatus
from overnight.report.markdown import write_report
from overnight.task_load import load_task
from overnight.testing.nights import Scripted, set_knobs
from overnight.testing.toy import write_toy
from overnight.verify import Remeasure, ablate, kept_chain, latest, verify


def lr_term(lr: float) -> float:
    return 0.08 * math.log10(lr / 0.002) ** 2


TRUE_GAIN = {2: 0.02, 3: 0.01, 5: lr_term(0.005) - lr_term(0.002)}
TOTAL = 0.02 + 0.01 + lr_term(0.01)


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    root = write_toy(tmp_path_factory.mktemp("verify") / "toy", env={"TOY_NOISE": "0.001"})
    steps = [
        set_knobs(ACTIVATION="gelu"),
        set_knobs(USE_NORM=True),
        set_knobs(LEARNING_RATE=0.005),
        set_knobs(LEARNING_RATE=0.002),
    ]
    c = Controller(
        root, RunConfig(tag="t", experiments=5, noise=NoiseSettings(remeasure_every=0)), proposer=Scripted(*steps)
    )
    c.run()
    history = c.journal.experiments("t")
    assert [e.status for e in history] == [ExpStatus.KEPT] * 5, [(e.id, e.reason) for e in history]
    c.journal.close()
    return root


def remeasure(root, runs=4, drawn=False):
    """Fixed fresh seeds by default: the intervals below are checked against the toy's truth,
    which a 95 % interval misses one time in twenty; `drawn`: the product's own."""
    from overnight.night.tags import open_journal

    seeds = None if drawn else [1000 + i for i in range(runs)]
    return Remeasure(root, load_task(root), open_journal(root), "t", runs, seeds=seeds)


def test_verify_and_ablate_measure_each_kept_change(night):
    rm = remeasure(night)
    history = rm.journal.experiments("t")
    assert [e.id for e in kept_chain(history, history[-1])] == [2, 3, 4, 5]

    base_values, best = verify(rm)
    assert len(base_values) == len(best.values) == 4 and best.label == "#5"
    assert 0 < best.low < TOTAL < best.high and best.gain == pytest.approx(TOTAL, abs=0.003)

    best_values, changes = ablate(rm)
    assert len(best_values) == 4
    by = {c.label: c for c in changes}
    assert list(by) == ["#2", "#3", "#4", "#5"]
    for exp_id, gain in TRUE_GAIN.items():
        c = by[f"#{exp_id}"]
        assert len(c.values) == 4
        assert 0 < c.low < gain < c.high, (exp_id, c)  # contribution positive, CI covers the truth
    assert by["#3"].note == by["#5"].note == "reverse-applied"
    assert by["#2"].note == 'constants put back: ACTIVATION="relu"'
    assert by["#4"].values == [] and by["#4"].note.startswith("superseded") and math.isnan(by["#4"].gain)

    # Fresh seeds: none of the night's, the same ones for every variant, new at every check.
    runs = sorted(p.name for p in (night / ".overnight" / "t" / "verify").iterdir())
    assert runs == sorted(
        f"{label}-{i}" for label in ("baseline-1", "best-5", "without-2", "without-3", "without-5") for i in range(4)
    )
    night_seeds = {r.seed for e in rm.journal.experiments("t") for r in e.runs + e.screens}
    checks = [json.loads(e["message"]) for k in ("verify", "ablate") for e in rm.journal.events("t", k)]
    fresh = [c["seeds"] for c in checks]
    assert all(len(set(f)) == len(f) == 4 and not set(f) & night_seeds for f in fresh), (fresh, night_seeds)
    assert len({tuple(f) for f in fresh}) == 1  # one Remeasure: its verify and ablate share them
    assert (
        len({*remeasure(night, 4, drawn=True).seeds, *remeasure(night, 4, drawn=True).seeds}) == 8
    )  # each draws its own
    assert latest(rm.journal, "t", "ablate")["best_id"] == 5

    md = write_report(rm.journal, "t", load_task(night), night, night / ".overnight" / "t")[1].read_text()
    assert "## Verified on fresh seeds" in md and "- wall clock, 1 s budget: best #5: gain +" in md
    assert "confirmed" in md and "median wall time per run: best" in md
    assert "## Ablation (each kept change taken out of #5; wall clock, 1 s budget)" in md
    assert "- #4: not measured (superseded" in md
    assert md.count("— confirmed") >= 4  # verify + three measured changes
    rm.journal.close()


def test_cli_prints_one_line_per_result(night, cli):
    res = cli("verify", night, "--tag", "t", "--runs", "2")
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("best #5 vs baseline (wall clock, 1 s budget): gain +")
    assert "2 fresh seeds" in lines[0] and lines[1].startswith("median wall time per run: best ")
    res = cli("ablate", night, "--tag", "t", "--runs", "2")
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["#2", "#3", "#4", "#5"]
    assert "median wall time per run: best without #2" in lines[0]
    assert "not measured (superseded" in lines[2] and "gain +" in lines[0]
    res = cli("verify", night, "--tag", "t", "--runs", "1")
    assert res.exit_code != 0 and "--runs must be at least 2" in res.output


def test_nothing_kept_is_a_one_line_error(tmp_path):
    root = write_toy(tmp_path / "toy")
    c = Controller(
        root,
        RunConfig(tag="t", experiments=2, noise=NoiseSettings(baseline_runs=2, remeasure_every=0)),
        proposer=Scripted(set_knobs(LEARNING_RATE=1.0)),
    )
    c.run()
    c.journal.close()
    rm = remeasure(root, runs=2)
    with pytest.raises(OvernightError, match="nothing was kept"):
        verify(rm)
    with pytest.raises(OvernightError, match="nothing was kept"):
        ablate(rm)
    rm.journal.close()


def test_verify_runs_under_the_budget_the_night_ran_under(tmp_path, cli):
    """`run --budget` overrides overnight.toml's: verify re-runs the commits under the night's
    budget, as the night measured them (the toy scores a run under 0.5 s of budget 0.1 worse)."""
    root = write_toy(tmp_path / "toy", env={"TOY_SHORT_BELOW": "0.5"})
    c = Controller(
        root,
        RunConfig(tag="t", experiments=2, budget=0.3, noise=NoiseSettings(baseline_runs=3, remeasure_every=0)),
        proposer=Scripted(set_knobs(ACTIVATION="gelu")),
    )
    c.run()
    base = c.journal.experiments("t")[0]
    assert c.journal.experiments("t")[1].status == ExpStatus.KEPT
    c.journal.close()
    res = cli("verify", root, "--tag", "t", "--runs", "2")
    assert res.exit_code == 0, res.output
    from overnight.night.tags import open_journal

    j = open_journal(root)
    fresh = latest(j, "t", "verify")["baseline"]
    j.close()
    # Under the toy's own 1 s budget the baseline would score about 0.1 better than in the night.
    assert abs(sum(fresh) / len(fresh) - base.value) < 0.02
    # --budget: the transfer check runs at another budget (here the toy's full one: 0.1 better),
    # --clock in another currency; both journaled with the check, both in the report.
    res = cli("verify", root, "--tag", "t", "--runs", "2", "--budget", "1", "--clock", "cpu")
    assert res.exit_code == 0, res.output
    assert res.output.startswith("best #2 vs baseline (cpu clock, 1 s budget): gain +"), res.output
    j = open_journal(root)
    checks = [json.loads(e["message"]) for e in j.events("t", "verify")]
    j.close()
    assert [(c["clock"], c["budget"], c["runs"]) for c in checks] == [("wall", 0.3, 2), ("cpu", 1.0, 2)]
    longer = checks[-1]["baseline"]
    assert sum(longer) / len(longer) < base.value - 0.08
    folder = root / ".overnight" / "t" / "verify"
    assert sorted(p.name for p in folder.iterdir() if "-cpu-1s" in p.name) == [
        "baseline-1-cpu-1s-0",
        "baseline-1-cpu-1s-1",
        "best-2-cpu-1s-0",
        "best-2-cpu-1s-1",
    ]
    # Seed by seed in turn: the baseline's and the best's runs alternate.
    order = sorted(folder.glob("*-cpu-1s-*"), key=lambda p: (p / "result.json").stat().st_mtime)
    assert [p.name.split("-")[0] for p in order] == ["baseline", "best", "baseline", "best"]
    res = cli("report", root, "--tag", "t")
    assert res.exit_code == 0, res.output
    md = (root / ".overnight" / "t" / "report.md").read_text()
    assert "- wall clock, 0.3 s budget: best #2" in md and "- cpu clock, 1 s budget: best #2" in md


def test_the_wall_time_each_side_takes_is_said():
    from overnight.verify import Comparison, wall_text

    same = Comparison("#5", [1.0, 1.1], 0.1, 0.05, 0.15, wall=30.4, ref_wall=29.0)
    assert wall_text(same, "best", "baseline") == "median wall time per run: best 30.4 s, baseline 29.0 s"
    dear = Comparison("#5", [1.0, 1.1], 0.1, 0.05, 0.15, wall=36.0, ref_wall=30.0)
    assert wall_text(dear, "best", "baseline").endswith(
        "— the best takes 20 % more wall time per run than the baseline"
    )
    assert wall_text(Comparison("#5", [1.0], 0.1, 0.0, 0.2), "best", "baseline") == ""  # an older check
