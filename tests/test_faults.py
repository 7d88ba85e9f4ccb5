"""The fault run (issue 7): 50 toy experiments, the controller SIGKILLed 5 times at random
points and restarted; bench/faults.py checks the journal, the branch, results.tsv and that
nothing is left running. About a minute: marked slow."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from overnight.testing.toy import write_toy

BENCH = Path(__file__).resolve().parents[1] / "bench" / "faults.py"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_fifty_experiments_five_sigkills(tmp_path, seed):
    spec = importlib.util.spec_from_file_location("bench_faults", BENCH)
    faults = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(faults)
    root = write_toy(tmp_path / "toy", env={"TOY_SLEEP": "0.1"})
    figures = faults.fault_night(n=50, kills=5, seed=seed, root=root, log=lambda _: None)
    assert figures["experiments"] == 50 and figures["kills"] == 5
