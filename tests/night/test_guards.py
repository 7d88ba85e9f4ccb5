"""guards.seed_only_change: a diff that only moves a seed is recognised, nothing else is."""

from overnight.night.guards import seed_only_change

OLD = {"train.py": "LR = 0.01\nSEED = 42  # random seed\ntorch.manual_seed(SEED)\n"}


def test_moving_the_seed_constant_or_call_is_seed_only():
    assert "SEED = 137" in seed_only_change(OLD, {"train.py": OLD["train.py"].replace("42", "137")})
    old = {"train.py": "torch.manual_seed(42)\nx = 1\n"}
    assert seed_only_change(old, {"train.py": "torch.manual_seed(137)\nx = 1\n"})


def test_other_changes_are_not():
    assert seed_only_change(OLD, {"train.py": OLD["train.py"].replace("0.01", "0.02")}) is None
    both = OLD["train.py"].replace("42", "137").replace("0.01", "0.02")
    assert seed_only_change(OLD, {"train.py": both}) is None
    assert seed_only_change(OLD, {"train.py": OLD["train.py"] + "x = 1\n"}) is None
    assert (
        seed_only_change(OLD, {"train.py": OLD["train.py"].replace("manual_seed(SEED)", "manual_seed(SEED+1)")}) is None
    )
    assert seed_only_change(OLD, {"other.py": "SEED = 1\n"}) is None
    assert seed_only_change(OLD, dict(OLD)) is None
