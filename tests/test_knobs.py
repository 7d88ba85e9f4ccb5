"""Knob discovery, range inference and byte-preserving rewriting (overnight.knobs)."""

from __future__ import annotations

import math
import random

import pytest

from overnight.knobs import discover, find_constants, infer_knob, rewrite

SRC = '''\
"""A training script. LR = 1 in a docstring is not a constant."""
import os

# ---------------------------------------------------------------------------
# Hyperparameters — réglages (unicode before the constants shifts byte offsets)
# ---------------------------------------------------------------------------
LEARNING_RATE = 3e-4  # peak learning rate
WIDTH = 2**7  # model width
DEPTH: int = 6  # annotated
DROPOUT = 0.1   # two spaces before this comment
USE_NORM = True
ACTIVATION = 'gelu'  # single quotes
OPTIMIZER = "adamw"
ADAM_BETAS = (0.8, 0.95)
SEED = 42
TOKENS = 6 * 64
DATA_DIR = os.path.join("data", "x")  # not a literal: ignored
lowercase = 3  # not UPPER_CASE: ignored
WARMUP = 0


def main():
    INSIDE = 5  # not module level: ignored
    return INSIDE
'''


def by_name(ks):
    return {k.name: k for k in ks}


def test_find_constants_kinds_and_values():
    consts = find_constants(SRC)
    assert {n: c.value for n, c in consts.items()} == {
        "LEARNING_RATE": 3e-4,
        "WIDTH": 128,
        "DEPTH": 6,
        "DROPOUT": 0.1,
        "USE_NORM": True,
        "ACTIVATION": "gelu",
        "OPTIMIZER": "adamw",
        "ADAM_BETAS": (0.8, 0.95),
        "SEED": 42,
        "TOKENS": 384,
        "WARMUP": 0,
    }
    assert consts["WIDTH"].text == "2**7"
    assert consts["ACTIVATION"].text == "'gelu'"


def test_last_assignment_wins():
    consts = find_constants("LR = 0.1\nLR = 0.2\n")
    assert consts["LR"].value == 0.2
    assert rewrite("LR = 0.1\nLR = 0.2\n", {"LR": 0.5}) == "LR = 0.1\nLR = 0.5\n"


def test_discover_names_excludes_seed_strings_and_non_literals():
    ks = by_name(discover({"train.py": SRC}))
    assert set(ks) == {
        "LEARNING_RATE",
        "WIDTH",
        "DEPTH",
        "DROPOUT",
        "USE_NORM",
        "ADAM_BETAS[0]",
        "ADAM_BETAS[1]",
        "TOKENS",
        "WARMUP",
    }
    assert all(k.file == "train.py" for k in ks.values())
    assert ks["ADAM_BETAS[1]"].constant == "ADAM_BETAS" and ks["ADAM_BETAS[1]"].index == 1
    assert ks["ADAM_BETAS[1]"].default == 0.95


def test_discover_only_python_files():
    assert discover({"notes.txt": "LR = 0.1\n", "train.py": "LR = 0.1\n"})[0].file == "train.py"
    assert len(discover({"notes.txt": "LR = 0.1\n"})) == 0


def test_inferred_ranges():
    ks = by_name(discover({"train.py": SRC}))
    lr = ks["LEARNING_RATE"]
    assert (lr.kind, lr.log) == ("float", True)
    assert lr.low == pytest.approx(3e-5) and lr.high == pytest.approx(3e-3)
    width = ks["WIDTH"]  # a power of two is searched by its exponent
    assert (width.kind, width.low, width.high) == ("pow2", 6, 8)
    depth = ks["DEPTH"]
    assert (depth.kind, depth.low, depth.high, depth.log) == ("int", 3, 12, False)
    drop = ks["DROPOUT"]  # a fraction stays inside (0, 1)
    assert drop.kind == "float" and not drop.log
    assert 0 < drop.low < 0.1 < drop.high < 1
    assert ks["USE_NORM"].kind == "cat" and set(ks["USE_NORM"].choices) == {True, False}
    assert ks["TOKENS"].kind == "int" and ks["TOKENS"].log  # wide counts: log scale
    assert ks["WARMUP"].low == 0 and ks["WARMUP"].high > 0
    assert infer_knob("NAME", "f.py", "text") is None


def test_infer_negative_and_zero_floats():
    zero = infer_knob("SHIFT", "f.py", 0.0)
    assert zero.low == 0.0 and zero.high > 0
    neg = infer_knob("SHIFT", "f.py", -1.0)
    assert neg.low < -1.0 < neg.high <= 0


@pytest.mark.parametrize("value", [1, 3, 16, 1000, 0.5, 0.9, 2e-4, 7.5, 0.0, -2.0, True, 64])
def test_samples_stay_inside_the_range(value):
    k = infer_knob("LR" if isinstance(value, float) and value < 1e-3 else "X", "f.py", value)
    rng = random.Random(0)
    for _ in range(300):
        v = k.sample(rng)
        if k.kind == "cat":
            assert v in k.choices
        elif k.kind == "pow2":
            assert v > 0 and v & (v - 1) == 0 and k.low <= math.log2(v) <= k.high
        else:
            assert k.low <= v <= k.high
            assert isinstance(v, int) if k.kind == "int" else isinstance(v, float)


def test_declared_knobs_override_inference():
    declared = {
        "ACTIVATION": ["gelu", "relu", "silu"],  # strings need declared choices
        "LEARNING_RATE": {"low": 1e-5, "high": 1e-2, "log": True},
        "DEPTH": False,  # leave alone
        "SEED": {"low": 0, "high": 10},  # a declared seed is searched after all
        "ADAM_BETAS[0]": False,
    }
    ks = by_name(discover({"train.py": SRC}, declared))
    assert ks["ACTIVATION"].kind == "cat" and ks["ACTIVATION"].choices == ("gelu", "relu", "silu")
    assert ks["ACTIVATION"].default == "gelu"
    lr = ks["LEARNING_RATE"]
    assert (lr.low, lr.high, lr.log, lr.kind) == (1e-5, 1e-2, True, "float")
    assert "DEPTH" not in ks
    assert ks["SEED"].kind == "int" and (ks["SEED"].low, ks["SEED"].high) == (0, 10)
    assert "ADAM_BETAS[0]" not in ks and "ADAM_BETAS[1]" in ks
    assert "OPTIMIZER" not in ks  # undeclared string


def test_declaring_a_whole_tuple_false_excludes_its_elements():
    ks = by_name(discover({"train.py": SRC}, {"ADAM_BETAS": False}))
    assert not any(n.startswith("ADAM_BETAS") for n in ks)


def _changed_lines(a: str, b: str) -> list[tuple[str, str]]:
    la, lb = a.splitlines(keepends=True), b.splitlines(keepends=True)
    assert len(la) == len(lb)
    return [(x, y) for x, y in zip(la, lb) if x != y]


def test_rewrite_touches_only_the_value_text():
    new = rewrite(SRC, {"DROPOUT": 0.25})
    assert _changed_lines(SRC, new) == [
        ("DROPOUT = 0.1   # two spaces before this comment\n", "DROPOUT = 0.25   # two spaces before this comment\n")
    ]


def test_rewrite_after_unicode_and_form_feed():
    src = "# é 学习率\n\x0c\nA = 1  # ünïcode\nB = 2.5\n"
    new = rewrite(src, {"B": 3.5, "A": 7})
    assert new == "# é 学习率\n\x0c\nA = 7  # ünïcode\nB = 3.5\n"


def test_rewrite_keeps_crlf_line_endings():
    src = "A = 1\r\nB = 2\r\n"
    assert rewrite(src, {"B": 5}) == "A = 1\r\nB = 5\r\n"


def test_rewrite_same_values_is_identity():
    consts = find_constants(SRC)
    same = {n: c.value for n, c in consts.items()}
    assert rewrite(SRC, same) == SRC
    ks = discover({"train.py": SRC})
    assert rewrite(SRC, {k.name: k.default for k in ks}) == SRC


def test_rewrite_many_round_trip():
    values = {
        "LEARNING_RATE": 1e-3,
        "WIDTH": 256,
        "DEPTH": 8,
        "USE_NORM": False,
        "ACTIVATION": "silu",
        "OPTIMIZER": "muon",
        "ADAM_BETAS[1]": 0.99,
        "TOKENS": 512,
        "WARMUP": 3,
    }
    new = rewrite(SRC, values)
    consts = find_constants(new)
    for name, value in values.items():
        if "[" in name:
            assert consts["ADAM_BETAS"].value == (0.8, 0.99)
        else:
            assert consts[name].value == value and type(consts[name].value) is type(value)
    # Rediscovery sees the new values as defaults.
    ks = by_name(discover({"train.py": new}))
    assert ks["DEPTH"].default == 8 and ks["WIDTH"].default == 256 and ks["USE_NORM"].default is False
    # Everything else is byte-identical: the changed lines are exactly the rewritten ones.
    changed = {old.split("=")[0].split(":")[0].strip() for old, _ in _changed_lines(SRC, new)}
    assert changed == {n.split("[")[0] for n in values}
    compile(new, "train.py", "exec")


def test_rewrite_styles():
    new = rewrite(SRC, {"WIDTH": 512, "ACTIVATION": "relu", "OPTIMIZER": "sgd", "DEPTH": 10, "ADAM_BETAS[0]": 0.9})
    assert "WIDTH = 2**9  # model width\n" in new  # 2**k stays 2**k
    assert "ACTIVATION = 'relu'  # single quotes\n" in new  # quote style kept
    assert 'OPTIMIZER = "sgd"\n' in new
    assert "DEPTH: int = 10  # annotated\n" in new  # annotation kept
    assert "ADAM_BETAS = (0.9, 0.95)\n" in new
    # A non-power of two in a 2**k slot is written plainly, and still parses to the value.
    assert find_constants(rewrite(SRC, {"WIDTH": 100}))["WIDTH"].value == 100


def test_rewrite_strings_with_quotes_round_trip():
    for value in ["it's", 'say "hi"', "back\\slash", "new\nline"]:
        for src in ("NAME = 'x'\n", 'NAME = "x"\n'):
            assert find_constants(rewrite(src, {"NAME": value}))["NAME"].value == value


def test_rewrite_floats_are_short_and_finite():
    new = rewrite("LR = 0.1\n", {"LR": 0.123456789})
    assert new == "LR = 0.1235\n"
    assert rewrite("LR = 3e-4  # lr\n", {"LR": 2e-4}) == "LR = 2e-4  # lr\n"  # e-notation kept
    with pytest.raises(ValueError):
        rewrite("LR = 0.1\n", {"LR": float("nan")})


def test_rewrite_unknown_name_raises():
    with pytest.raises(KeyError):
        rewrite(SRC, {"NOPE": 1})


def test_exponent_guard():
    # 2**10000 must not be computed (or hang) while discovering.
    assert "BIG" not in find_constants("BIG = 2**100000\n")
    assert find_constants("OK = 2**64\n")["OK"].value == 2**64
