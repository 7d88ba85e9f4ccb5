"""The noise judge inside the real loop on the toy task: real git, subprocesses, SQLite.

Seed-ignoring candidates, drift of the machine, the simplicity rule, and the A/A stream
(changes that do nothing) against greedy.
"""

from __future__ import annotations

import json
import statistics

import pytest

from overnight import knobs
from overnight.judges.noise import NoiseSettings
from overnight.night.config import RunConfig
from overnight.night.controller import Controller
from overnight.proposers import Proposal
from overnight.records import ExpStatus
from overnight.report.markdown import report_markdown
from overnight.task_load import load_task
from overnight.testing.nights import Scripted, commit_change, no_op, pin_seed, set_knobs
from overnight.testing.toy import write_toy


def night(root, *steps, n=None, judge="noise", **settings):
    settings.setdefault("remeasure_every", 0)
    # Screening off: these tests count the judge's own runs (screening: tests/night/test_screen.py).
    cfg = RunConfig(
        tag="t",
        judge=judge,
        experiments=n or len(steps) + 1,
        noise=NoiseSettings(**settings),
        screen=False,
        seed_secret="",  # seeds 0, 1, ...: these nights' outcomes were set by their seeds' noise
    )
    c = Controller(root, cfg, proposer=Scripted(*steps))
    c.run()
    return c, {e.id: e for e in c.journal.experiments("t")}


def status_json(cli, root) -> dict:
    res = cli("status", root, "--tag", "t", "--json")
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def test_candidate_that_ignores_the_seed_is_discarded_and_flagged(tmp_path, cli):
    # Without the toy's re-score, which would discard it outright (its metric is not what the
    # protected code gives under the harness's seed): this is about the judge's own rule.
    root = write_toy(tmp_path / "toy", rescore=False)
    c, h = night(root, pin_seed(ACTIVATION="gelu"))
    seedless = h[2]
    # 0.02 better would be real, but a pinned seed is never kept: discarded at its first run,
    # from its diff (it sets OVERNIGHT_SEED), with its own reason and event.
    assert [r.seed for r in seedless.runs] == [0]
    assert seedless.status == ExpStatus.DISCARDED
    assert seedless.reason.startswith("ignores OVERNIGHT_SEED: its change pins OVERNIGHT_SEED")
    events = c.journal.events("t", "ignores-seed")
    assert len(events) == 1 and events[0]["message"] == f"#2: {seedless.reason}"
    d = status_json(cli, root)
    assert d["flagged"] == [events[0]["message"]]
    # The pinned runs add nothing to the noise estimate: only the baseline's runs do.
    assert d["noise"]["df"] == NoiseSettings().baseline_runs - 1
    md = report_markdown(c.journal, "t", load_task(root), root / ".overnight")
    assert "## Candidates that ignore the seed" in md and events[0]["message"] in md


def test_honest_candidate_is_not_flagged(tmp_path, cli):
    root = write_toy(tmp_path / "toy")
    c, h = night(root, set_knobs(ACTIVATION="gelu"), set_knobs(USE_NORM=True))
    assert h[2].status == h[3].status == ExpStatus.KEPT
    # Each replicate has its own seed and its own value, the incumbent's top-ups included.
    for e in h.values():
        assert [r.seed for r in e.runs] == list(range(len(e.runs)))
        assert len(set(e.ok_values)) == len(e.ok_values)
    d = status_json(cli, root)
    assert c.journal.events("t", "ignores-seed") == [] and d["flagged"] == []
    # What the judge can see now, in metric units, and how it compares the next candidate.
    assert d["detectable_gain"] is not None and d["detectable_gain"] >= 0
    assert d["noise"]["design"] in ("paired", "unpaired") and d["noise"]["paired_df"] >= 1


def test_drift_of_the_machine_shows_in_status_and_report(tmp_path, cli):
    """evaluate.py adds an offset read from a file outside the repository; the test flips it
    in the middle of the night (when the 4th experiment is proposed), as a machine that got
    slower would. The incumbent's second re-measure lands far off and is reported."""
    offset = tmp_path / "offset"
    root = write_toy(tmp_path / "toy")
    commit_change(
        root,
        "evaluate.py",
        "    loss = true_loss(constants) + noise * draw\n",
        "    loss = true_loss(constants) + noise * draw\n"
        f"    loss += float(open({str(offset)!r}).read()) if os.path.exists({str(offset)!r}) else 0.0\n",
        "an evaluation that depends on the machine",
    )

    def flip_then(step):
        def flipped(ctx):
            offset.write_text("0.05")  # 25 noise sds
            return step(ctx)

        return flipped

    worse = [set_knobs(LEARNING_RATE=lr) for lr in (0.5, 0.6, 0.7, 0.8)]
    # Unpaired: the toy's seeds share no noise between configurations, and a paired night's
    # first candidates run twice (to measure the paired noise), which could straddle the flip.
    steps = (worse[0], worse[1], flip_then(worse[2]), worse[3])
    c, h = night(root, *steps, remeasure_every=2, baseline_runs=6, paired=False)
    base = h[1]
    assert all(h[i].status == ExpStatus.DISCARDED and len(h[i].runs) == 1 for i in (2, 3, 4, 5))
    # 6 baseline seeds, then a re-measure after #3 (same machine) and after #5 (shifted).
    assert [r.seed for r in base.runs] == list(range(8)) and base.status == ExpStatus.KEPT
    assert base.runs[7].started > h[5].decided > base.runs[6].started > h[3].decided
    assert base.value == pytest.approx(statistics.fmean(base.ok_values))
    drift = c.journal.events("t", "drift")
    assert len(drift) == 1, drift  # the first re-measure was within the noise
    assert (
        drift[0]["message"].startswith("incumbent #1 re-measured at")
        and " se from its earlier mean" in drift[0]["message"]
    )
    z = float(drift[0]["message"].split(", ")[1].split(" se")[0])
    assert z > 10
    d = status_json(cli, root)
    assert d["drift"] == [drift[0]["message"]]
    res = cli("report", root, "--tag", "t")
    assert res.exit_code == 0, res.output
    md = (root / ".overnight" / "t" / "report.md").read_text()
    assert "## Drift" in md and drift[0]["message"] in md


def test_simplicity_rule_both_ways(tmp_path):
    root = write_toy(tmp_path / "toy")
    docstring = root.joinpath("train.py").read_text().split("from evaluate")[0]
    assert docstring.count("\n") == 6
    helpers = "".join(f"_helper_{i} = {i}\n" for i in range(3))  # code lines the loss ignores

    def padded(ctx):  # the same 0.01 gain as #3, bought with 12 added code lines
        src = set_knobs(USE_NORM=True)(ctx).edits["train.py"]
        return Proposal("USE_NORM with padding", {"train.py": src + "_pad = 0\n" * 12}, {})

    def commented(ctx):  # 12 comment lines: not code, not charged
        src = set_knobs(USE_NORM=True)(ctx).edits["train.py"]
        return Proposal("USE_NORM with comments", {"train.py": src + "# pad\n" * 12}, {})

    def strip_docstring(ctx):  # 6 lines fewer, but no code: not a simplification
        src = ctx.incumbent_files["train.py"]
        return Proposal("drop the docstring", {"train.py": src.replace(docstring, "")}, {})

    c, h = night(root, padded, commented, strip_docstring, line_price=0.002)
    assert h[2].status == ExpStatus.DISCARDED and "+12 lines" in h[2].reason  # 0.024 charged > 0.01 gained
    assert h[3].status == ExpStatus.KEPT and h[3].reason.startswith("confirmed") and "+0 lines" in h[3].reason
    assert "+0 lines" in h[4].reason and not h[4].reason.startswith("simplification"), h[4].reason

    def with_helpers(ctx):
        src = set_knobs(USE_NORM=True)(ctx).edits["train.py"]
        return Proposal("USE_NORM with helpers", {"train.py": src + helpers}, {})

    def strip_helpers(ctx):  # 3 code lines fewer, and 0.0015 (0.76 sd) better: too little to confirm
        src = knobs.rewrite(ctx.incumbent_files["train.py"], {"WARMUP_RATIO": 0.48})
        return Proposal("drop the helpers", {"train.py": src.replace(helpers, "")}, {})

    root2 = write_toy(tmp_path / "toy2")
    worse = set_knobs(WIDTH=8)  # a filler, discarded: the removal is proposed once #2 is kept
    _, h2 = night(root2, with_helpers, worse, strip_helpers)
    assert h2[2].status == ExpStatus.KEPT and "+3 lines" in h2[2].reason, h2[2].reason
    assert h2[4].status == ExpStatus.KEPT and h2[4].reason.startswith("simplification"), h2[4].reason
    # judged on its own pairs (the night had 3 df of pairs): the non-inferiority test at its 8th run
    assert "-3 lines" in h2[4].reason and len(h2[4].runs) == 8 and h2[4].parent_id == 2
    # Off: the same removal is one more candidate that did not beat the incumbent.
    root3 = write_toy(tmp_path / "toy3")
    _, h3 = night(root3, with_helpers, worse, strip_helpers, simplify=False)
    assert h3[4].status == ExpStatus.DISCARDED and "-3 lines" in h3[4].reason, h3[4].reason


def test_aa_stream_noise_keeps_almost_nothing_greedy_keeps_noise(tmp_path):
    """30 candidates that change nothing the loss depends on. The noise judge (its defaults,
    re-measures included) keeps at most 2; greedy, on the very same stream, keeps every new
    record low and claims a gain that does not exist."""
    n = 30
    results = {}
    for judge in ("noise", "greedy"):
        root = write_toy(tmp_path / judge)
        cfg = RunConfig(tag="t", judge=judge, experiments=n + 1, seed_secret="")  # fixed seeds: a fixed stream
        c = Controller(root, cfg, proposer=Scripted(*[no_op(i) for i in range(1, n + 1)]))
        c.run()
        h = c.journal.experiments("t")
        assert len(h) == n + 1 and all(e.status in (ExpStatus.KEPT, ExpStatus.DISCARDED) for e in h)
        # No candidate changed a constant the loss depends on.
        base = {k: v.value for k, v in knobs.find_constants((root / "train.py").read_text()).items()}
        for e in h[1:]:
            consts = {k: v.value for k, v in knobs.find_constants(e.edits["train.py"]).items()}
            assert consts.pop("AA_TRIAL") == e.id - 1 and consts == base
        kept = [e for e in h[1:] if e.status == ExpStatus.KEPT]
        best = max((e for e in h if e.status == ExpStatus.KEPT), key=lambda e: (e.decided, e.id))
        results[judge] = (len(kept), h[0].value - best.value, sum(len(e.runs) for e in h[1:]))
        c.journal.close()
    noise_kept, noise_claim, noise_runs = results["noise"]
    greedy_kept, greedy_claim, greedy_runs = results["greedy"]
    sd = 0.002
    assert noise_kept <= 2, results
    assert greedy_kept > 2, results  # the bound above fails for greedy
    # Greedy's "gain" is the winner's curse, larger than what the noise judge's rare false keep shows.
    assert greedy_claim > max(1.5 * sd, noise_claim), results
    # The price: confirmation runs. A/A candidates are the costly case (half pass the screen).
    assert greedy_runs == n and noise_runs < 3 * n, results
