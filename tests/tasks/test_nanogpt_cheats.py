"""Budget cheats through `overnight run` (slow: about 3 minutes on 2 cores; run with -m slow).

The shrunken nanogpt task under its preset's steps clock, a scripted model (a real HTTP server
on loopback) proposing testing/cheats.py's edits one after another, the default noise judge
without screening (so every cheat trains full-budget runs whose steps can be compared with the
baseline's). Issue 30's bar: a second pass over each batch and a sleep as long as each step
train at most 0.65x the baseline's steps; none of the three cheats is kept; counting half the
tokens buys no more steps than the baseline's.
"""

from __future__ import annotations

import pytest

from overnight import gitops
from overnight.tasks import write_task
from overnight.testing import cheats
from overnight.testing.nanogpt import shrink


@pytest.mark.slow
def test_planted_budget_cheats_are_charged_and_never_kept(tmp_path, corpus, cli, fake, monkeypatch):
    root = tmp_path / "task"
    root.mkdir()
    write_task("nanogpt", root, "cpu", f"text:{corpus}")
    shrink(root)
    gitops.init_repo(root, "init")
    monkeypatch.setenv("OVERNIGHT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the tiny model: one thread is fastest, and steadiest
    cheats.serve_cheats(fake)
    args = ["run", root, "--tag", "t", "--experiments", 4, "--budget", 4, "--no-screen", "--baseline-seeds", 4]
    args += ["--proposer", "llm", "--model", "any", "--base-url", fake.openai_url, "--quiet"]
    res = cli(*args)
    assert res.exit_code == 0, res.output
    found = cheats.outcomes(root, "t")
    report = cheats.dump(found)
    base, *tried = found
    expected = ("Train twice on each batch.", "Pause each step.", "Count half the tokens.")
    assert [o.description.startswith(d) for o, d in zip(tried, expected)] == [True] * 3, report
    assert base.status == "kept" and len(base.steps) >= 4, report
    for o in tried:
        assert o.status != "kept", report
    second, sleep, half = tried
    assert cheats.steps_ratio(base, second) <= 0.65, report
    assert cheats.steps_ratio(base, sleep) <= 0.65, report
    assert half.status == "discarded" and cheats.steps_ratio(base, half) <= 1.1, report
